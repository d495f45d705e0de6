"""/healthz: are the database and the Celery broker answering?

``200 {"database": "ok", "broker": "ok"}`` when both answer, ``503`` with the
failing one marked ``"unreachable"`` otherwise. The body never carries exception
text: a broker or database error message can quote a URL with its password in
it. Failures are logged by exception class only, for the same reason.

Load balancers and uptime monitors poll this, so each check is bounded by a
short timeout and the view takes no lock and writes nothing.
"""

from __future__ import annotations

import logging
import os

from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

OK = "ok"
UNREACHABLE = "unreachable"
# Seconds to wait for the broker's socket. Short: a monitor would rather hear
# "unreachable" quickly than time out itself.
BROKER_CONNECT_TIMEOUT = 2.0


def database_check(*, alias: str = "default") -> str:
    """``"ok"`` when the database answers a trivial query, else ``"unreachable"``."""
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        logger.warning("healthz: database check failed (%s)", type(exc).__name__)
        return UNREACHABLE
    return OK


def broker_check() -> str:
    """``"ok"`` when the Celery broker accepts a connection, else ``"unreachable"``.

    Uses the Celery app's own broker settings, so it checks exactly what the
    workers use. For the filesystem broker (development) "accepts a connection"
    means its message folders exist and are writable.
    """
    from portal.celery import app

    try:
        with app.connection_for_write(connect_timeout=BROKER_CONNECT_TIMEOUT) as conn:
            # One retry after a short pause rides over a blip without letting
            # a dead broker hold the request for long.
            conn.ensure_connection(max_retries=1, interval_start=0.2, interval_step=0, interval_max=0.2)  # type: ignore[arg-type]
            if conn.transport.driver_type == "filesystem":
                options = conn.transport_options or {}
                for key in ("data_folder_in", "data_folder_out"):
                    folder = options.get(key)
                    if folder and not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
                        raise OSError(f"filesystem broker folder {key} is missing or not writable")
    except Exception as exc:
        logger.warning("healthz: broker check failed (%s)", type(exc).__name__)
        return UNREACHABLE
    return OK


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Report the database and broker; 503 when either is unreachable."""
    checks = {"database": database_check(), "broker": broker_check()}
    healthy = all(value == OK for value in checks.values())
    return JsonResponse(checks, status=200 if healthy else 503)
