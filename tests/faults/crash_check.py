"""A worker that dies by SIGKILL in the middle of a renewal (run as a subprocess by test_worker_killed).

Usage: ``python tests/faults/crash_check.py <connection_id>`` with the
portal's environment (``DATABASE_URL``, ``TOKEN_ENCRYPTION_KEYS``) and
``CRASH_AT`` set to where the process kills itself:

``after_renew``
    the provider answered the renewal; nothing was written yet;
``before_commit``
    the new credentials are written inside the renewal's transaction, which
    is not committed yet.

It then runs the ``connections.check_connection`` task body, as a Celery
worker would. The hook is a monkeypatch installed here only; nothing in the
portal knows about it. Exit status 3 means the crash point was never reached.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    import django

    django.setup()

    from connections import tasks
    from connections.providers import registry

    crash_at = os.environ["CRASH_AT"]
    if crash_at == "after_renew":
        for cls in set(registry.PROVIDERS.values()):
            original = cls.renew

            def renew_then_die(self: Any, *, connection: Any, _original: Any = original) -> Any:
                _original(self, connection=connection)
                _die()

            cls.renew = renew_then_die  # type: ignore[method-assign]
    elif crash_at == "before_commit":
        from connections.lifecycle import check

        original_upsert = check.credentials_upsert

        def upsert_then_die(issued: Any, **owner: Any) -> Any:
            original_upsert(issued, **owner)
            _die()

        check.credentials_upsert = upsert_then_die
    else:
        raise SystemExit(f"unknown CRASH_AT {crash_at!r}")

    tasks.check_connection(int(sys.argv[1]))
    return 3


if __name__ == "__main__":
    sys.exit(main())
