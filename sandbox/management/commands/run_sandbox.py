"""``manage.py run_sandbox``: serve the sandbox as its own gunicorn process.

Only ``/sandbox/`` is served (settings ``sandbox.server_settings``), against
the database the environment names, so a load test's simulated latency does
not take the portal's workers. Point the portal's ProviderApps (or
``SANDBOX_BASE_URL``) at ``http://<host>:<port>/sandbox``.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

SETTINGS_MODULE = "sandbox.server_settings"


def gunicorn_argv(
    *, host: str, port: int, workers: int, threads: int, timeout: int, access_log: bool = False
) -> list[str]:
    """The gunicorn command line for the sandbox server.

    Threaded workers (gthread): a hang or latency fault occupies one thread,
    not a whole process. gunicorn's own ``timeout`` must outlast the longest
    hang a test injects, or gunicorn would kill the worker mid-hang. The
    access log is off unless asked for: its request lines carry query strings
    (an authorize URL's ``state`` and checksum).
    """
    executable = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or shutil.which("gunicorn")
    if executable is None:
        raise CommandError("gunicorn is not installed in this environment (it is in requirements.txt).")
    argv = [
        executable,
        "sandbox.wsgi:application",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--timeout",
        str(timeout),
        "--env",
        f"DJANGO_SETTINGS_MODULE={SETTINGS_MODULE}",
    ]
    if access_log:
        argv += ["--access-logfile", "-"]
    return argv


class Command(BaseCommand):
    help = "Serve the provider sandbox (/sandbox/ only) as its own gunicorn server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8200)
        parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
        parser.add_argument("--threads", type=int, default=16, help="threads per worker (default 16)")
        parser.add_argument(
            "--timeout", type=int, default=120, help="seconds before gunicorn recycles a stuck worker (default 120)"
        )
        parser.add_argument(
            "--access-log",
            action="store_true",
            help="print gunicorn's access log (request lines include query strings)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["workers"] < 1 or options["threads"] < 1:
            raise CommandError("--workers and --threads must be at least 1.")
        argv = gunicorn_argv(
            host=options["host"],
            port=options["port"],
            workers=options["workers"],
            threads=options["threads"],
            timeout=options["timeout"],
            access_log=options["access_log"],
        )
        self.stdout.write(
            f"Sandbox on http://{options['host']}:{options['port']}/sandbox/ (settings {SETTINGS_MODULE})"
        )
        self.stdout.flush()
        os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
        # Replace this process with gunicorn so signals (Ctrl-C, honcho, systemd)
        # reach the server directly.
        os.execv(argv[0], argv)  # noqa: S606
