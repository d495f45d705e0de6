"""Views of the four simulators and of the control API, one module each."""
