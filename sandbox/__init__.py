"""Local simulators of the four provider APIs (see sandbox/README.md); imports nothing from ``connections``."""
