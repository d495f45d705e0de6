"""Views: thin, they validate input and call services or selectors."""
