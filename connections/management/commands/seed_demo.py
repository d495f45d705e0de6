"""``manage.py seed_demo``: demo data for development, built through the real lifecycle. Idempotent.

Creates the firm "Demo Advisory", development-only logins (see
:data:`~connections.demo.world.DEMO_LOGINS`, all with
:data:`~connections.demo.world.DEMO_PASSWORD`), eight households with clients,
one sandbox ProviderApp per provider in the registry, and connections on every
provider in every status (:data:`~connections.demo.world.CONNECTIONS`), with
accounts, deadlines and about 30 days of history.

The demo decides no status and words no event itself (:mod:`connections.demo.lives`).
A connection is started with ``lifecycle.connection_start`` and connected
with ``lifecycle.grant_apply`` and a real Grant; the checks of its past are
replayed through ``rules.decide`` on a simulated clock and stored the way a
check stores them, with the happenings a real check reports
(:mod:`connections.demo.history`); disconnected ones go through
``lifecycle.connection_disconnect``, the abandoned authorization through
``lifecycle.connections_abandon``. Every provider takes the same path: what
differs is what its client and the sandbox answer.

Real sandbox subjects. With the sandbox installed (``SANDBOX_ENABLED``, the
default in development) each connection's client grants access at the
sandbox (its ``sandbox_grant`` command), and the provider's real client
completes the connect from what the sandbox hands over (sign-in fields, or
the callback's parameters). No web server need run: while the command runs,
the providers' calls to ``SANDBOX_BASE_URL`` are served by this process
(:mod:`connections.demo.in_process`). An outage in a history is what the
real client reports when the sandbox fails once; a needs-reconnect
connection's subject is broken the way its reason says, and its flagging is
what the real client then finds. So active connections stay active under the
real worker and beat, degraded ones recover at their next check, and
needs-reconnect ones stay broken: a forced check finds them still needing a
reconnect, for the same reason wherever the lifecycle kept credentials to
check with (a renewal refused for good deletes them, as in production). A
reconnect through the sandbox (same Turnqey identity and consent-page
username, Coinify email and :data:`DEMO_PASSWORD`, Dapi username: the
client's email) proves the same source account.

Without the sandbox, grants are placeholders: made-up source-account ids and
balances, no credentials (a note says so); histories name no provider error,
and the first checks flag the working connections.

Idempotent: every row has a natural key (username, household reference,
client name within a household, connection's client + app + platform), and
only what is missing is created, so a second run changes nothing. A
connection's history is made with it and never touched again, so whatever
the running system later did to a demo connection is kept. A run with the
sandbox gives real subjects to the connections an earlier sandbox-less run
left with placeholders.

The sandbox's ``reset`` forgets every subject. After one, run ``seed_demo
--refresh-sandbox`` (before or instead of ``make run``'s plain ``seed_demo``):
it creates the subjects again and re-stores every demo connection's
credentials and ids; connections that were seeded working and have been
flagged since are reconnected through ``lifecycle.grant_apply``.

Refuses to run with ``DEBUG`` off: the logins share a published password.

What the demo holds is specified in :mod:`connections.demo.world` and seeded
by :class:`connections.demo.seed.Seeder`; this command checks that it may run,
runs it and says what it created.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from connections.demo.seed import Seeder


class Command(BaseCommand):
    help = "Load the demo firm, logins, households and connections (development only; idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--refresh-sandbox",
            action="store_true",
            help=(
                "Create the demo connections' sandbox subjects again and re-store their credentials "
                "(after the sandbox was reset)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "seed_demo creates logins with a published development password and refuses to run "
                "with DEBUG off (production)."
            )
        seeder = Seeder(
            stdout=self.stdout, stderr=self.stderr, style=self.style, verbosity=int(options.get("verbosity", 1))
        )
        created = seeder.run(refresh=options.get("refresh_sandbox", False))
        if created:
            self.stdout.write(self.style.SUCCESS(f"Demo data loaded: created {created.summary()}."))
        else:
            self.stdout.write("Demo data already present; nothing changed.")
