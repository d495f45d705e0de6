"""Version 1 of the firm's JSON API (django-ninja): :data:`app.api` is mounted at ``/api/v1/``."""
