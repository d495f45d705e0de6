"""WSGI entry point of the separate sandbox server (``manage.py run_sandbox``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sandbox.server_settings")

application = get_wsgi_application()
