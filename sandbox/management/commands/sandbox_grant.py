"""``manage.py sandbox_grant PROVIDER ...``: a person grants a partner app access; the reply is what the partner gets.

Without ``--break`` the subject is created (as consent on the provider's page
or a sign-in would create it) and the reply, JSON on standard output, is what
the partner receives to complete the connect, in the provider's own terms::

    manage.py sandbox_grant coinify --app-id p-1 --email ann@example.test --password pw
    {"provider": "coinify", "fields": {"email": "ann@example.test", "password": "pw"}, "subject": {"user_id": 7}}

    manage.py sandbox_grant dapi --app-id dapi-key --email ann@example.test
    {"provider": "dapi", "params": {"accessCode": "…", "connectionID": "…", "userSecret": "…", …}, …}

``fields`` are a sign-in form's inputs under the provider's names; ``params``
the query parameters the provider appends to the app's redirect URI. With
``--break revoked|expired|credentials_invalid`` the subject the same facts
name is broken that way instead (a break the provider cannot suffer is an
error saying why). See :mod:`sandbox.grants`. The reply may hold secrets (a
password, a client secret, an access code): it is printed, never logged.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sandbox import grants
from sandbox.models import Provider
from sandbox.services import SandboxError


class Command(BaseCommand):
    help = "A person grants a partner app access at a sandbox provider; prints what the partner receives (JSON)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("provider", choices=Provider.values, help="the sandbox mount (bloquo is staging)")
        parser.add_argument("--app-id", default="", help="Turnqey client id, Coinify partner id, Dapi app key")
        parser.add_argument("--name", default="", help="the person's name")
        parser.add_argument("--email", default="", help="the person's email (their sign-in, where it is one)")
        parser.add_argument("--identity", default="", help="the partner-side identity (Turnqey)")
        parser.add_argument("--platform", default="", help="the source platform (Turnqey)")
        parser.add_argument("--collection", default="", help="a collection the household already has (Turnqey)")
        parser.add_argument("--password", default="", help="the sign-in password where there is one (generated)")
        parser.add_argument("--break", dest="how", choices=grants.BREAKS, help="break the subject instead")

    def handle(self, *args: Any, **options: Any) -> None:
        person = grants.Person(
            app_id=options["app_id"].strip(),
            name=options["name"].strip(),
            email=options["email"].strip(),
            identity=options["identity"].strip(),
            platform=options["platform"].strip(),
            collection=options["collection"].strip(),
            password=options["password"],
        )
        try:
            if options["how"]:
                reply = grants.grant_break(provider=options["provider"], person=person, how=options["how"])
            else:
                reply = grants.grant_answer(provider=options["provider"], person=person)
        except SandboxError as error:
            raise CommandError(error.message) from None
        self.stdout.write(json.dumps(reply))
