"""Settings for the sandbox served as its own process (``manage.py run_sandbox``).

The portal's settings, with the URLs narrowed to ``/sandbox/`` only and the
middleware the simulators do not need removed. The database is the one the
environment names (``DATABASE_URL``), so the separate server and the portal
share one sandbox world. ``SANDBOX_CONTROL_TOKEN``, when set in the
environment, protects the control API here as it does in the portal (the
portal's settings read it).
"""

from __future__ import annotations

from portal.settings import *  # noqa: F403
from portal.settings import INSTALLED_APPS, MIDDLEWARE

SANDBOX_ENABLED = True
if "sandbox" not in INSTALLED_APPS:
    INSTALLED_APPS = [*INSTALLED_APPS, "sandbox"]

ROOT_URLCONF = "sandbox.server_urls"
WSGI_APPLICATION = "sandbox.wsgi.application"

# No logins, sessions or htmx here: the simulators are APIs and two consent forms.
MIDDLEWARE = [
    m
    for m in MIDDLEWARE
    if m
    not in {
        "axes.middleware.AxesMiddleware",
        "django_htmx.middleware.HtmxMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    }
]

# On one host, cookies are shared across ports: keep the sandbox's CSRF cookie
# from overwriting the portal's.
CSRF_COOKIE_NAME = "sandbox_csrftoken"

# Tokens and log rows are throwaway test state: skip the WAL flush on commit
# (visibility is unchanged; only the last writes before a crash could be lost).
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":  # noqa: F405
    _options = DATABASES["default"].setdefault("OPTIONS", {})  # noqa: F405
    _options["options"] = (_options.get("options", "") + " -c synchronous_commit=off").strip()
    # The request log then needs no transaction of its own to skip the flush.
    SANDBOX_SESSION_ASYNC_COMMIT = True
