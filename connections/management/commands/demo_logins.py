"""``manage.py demo_logins``: print the portal URL and the development logins.

`make run` calls it after `seed_demo`, so the last thing a developer sees
before the server logs start is where to go and how to sign in. With ``DEBUG``
off it prints no password: demo logins do not exist in production.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from connections.demo.world import DEMO_LOGINS, DEMO_PASSWORD
from portal.outbox import BACKEND as OUTBOX_BACKEND


class Command(BaseCommand):
    help = "Print the portal URL and the demo logins created by seed_demo."

    def handle(self, *args: Any, **options: Any) -> None:
        base = settings.PORTAL_BASE_URL
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Portal:       {base}/"))
        self.stdout.write(f"Django admin: {base}/admin/")
        if not settings.DEBUG:
            self.stdout.write("DEBUG is off: there are no demo logins in production.")
            return

        existing = set(
            get_user_model()
            .objects.filter(username__in=[login.username for login in DEMO_LOGINS])
            .values_list("username", flat=True)
        )
        if not existing:
            self.stdout.write("No demo logins yet: run `python manage.py seed_demo`.")
            return

        width = max(len(login.username) for login in DEMO_LOGINS)
        self.stdout.write("")
        self.stdout.write(f"Demo logins (development only), password: {DEMO_PASSWORD}")
        self.stdout.write(f"  {'username'.ljust(width)}  role")
        for login in DEMO_LOGINS:
            if login.username in existing:
                self.stdout.write(f"  {login.username.ljust(width)}  {login.description}")
        self.stdout.write("")
        if settings.EMAIL_BACKEND == OUTBOX_BACKEND:
            self.stdout.write(f"Emails the portal sends: {base}/dev/outbox/ (kept here, never sent)")
        if getattr(settings, "SANDBOX_ENABLED", False) and getattr(settings, "SANDBOX_SIGN_IN_HINTS", False):
            self.stdout.write(f"Sandbox sign-ins:        {settings.SANDBOX_BASE_URL.rstrip('/')}/_hints/")
        self.stdout.write("")
