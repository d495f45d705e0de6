"""/healthz: are the database and the Celery broker answering, and can the portal read its own secrets?

``200 {"database": "ok", "broker": "ok", "secrets": "ok"}`` when all hold;
``503`` with the failing one marked ``"unreachable"`` (or, for secrets,
``"unreadable"``: a provider app's client secret or app token that no
configured key decrypts, so every call through that app would fail). The body never carries exception
text: a broker or database error message can quote a URL with its password in
it. Failures are logged by exception class only, for the same reason.

Load balancers and uptime monitors poll this, so each check is bounded by a
short timeout and the view takes no lock and writes nothing.
"""

from __future__ import annotations

import logging
import os

from django.db import connections
from django.db.models import TextField
from django.db.models.functions import Cast
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

OK = "ok"
UNREACHABLE = "unreachable"
UNREADABLE = "unreadable"
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


def secrets_check() -> str:
    """``"ok"`` when every provider app's own secrets decrypt, else ``"unreadable"``.

    Only the apps' secrets (a handful of rows): a connection's credential that
    cannot be read shows on that connection instead (it needs a reconnect).
    The ciphertext is read as text and decrypted here, so nothing is logged
    but the app's id.
    """
    from .crypto import DecryptionError, decrypt
    from .models import Credential, ProviderApp

    try:
        raw: TextField[str, str] = TextField()
        secrets = [
            *ProviderApp.objects.filter(client_secret__isnull=False)
            .annotate(raw=Cast("client_secret", raw))
            .values_list("pk", "raw"),
            *Credential.objects.filter(provider_app__isnull=False)
            .annotate(raw=Cast("value", raw))
            .values_list("provider_app_id", "raw"),
        ]
    except Exception as exc:
        logger.warning("healthz: secrets check failed (%s)", type(exc).__name__)
        return UNREACHABLE
    unreadable = []
    for app_id, token in secrets:
        try:
            decrypt(token)
        except DecryptionError:
            unreadable.append(app_id)
    if unreadable:
        logger.error("healthz: provider app(s) %s hold secrets no configured key decrypts.", sorted(set(unreadable)))
        return UNREADABLE
    return OK


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Report the database, the broker and the apps' secrets; 503 when any fails."""
    checks = {"database": database_check(), "broker": broker_check()}
    checks["secrets"] = secrets_check() if checks["database"] == OK else UNREACHABLE
    healthy = all(value == OK for value in checks.values())
    return JsonResponse(checks, status=200 if healthy else 503)
