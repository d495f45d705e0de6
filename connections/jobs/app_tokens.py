"""Keep each enabled ProviderApp's app token fresh between runs of the ``refresh_app_tokens`` job."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.utils import timezone

from .. import lifecycle
from ..logging import redact
from ..models import ProviderApp
from ..providers.errors import ErrorKind, ProviderError
from ..throttling import rate_limit_acquire
from .locks import job_slot_seconds

logger = logging.getLogger("connections.jobs")

# The refresh_app_tokens job may start this much late (a busy beat or queue);
# an app token must outlast the next run by at least this.
APP_TOKEN_SLACK_SECONDS = 60


def app_tokens_refresh(*, now: datetime | None = None) -> dict[str, str]:
    """Per enabled app: "ok", "none" (the provider has no app token), "deferred (rate limit)", or a failure.

    "Fresh" means valid until after the next run: a token that would lapse
    before then (within this job's slot plus :data:`APP_TOKEN_SLACK_SECONDS`)
    is replaced now, through the client's ``fetch_app_token`` where it has
    one. Every call takes a token from the app's shared rate limit first; when
    none is free the app waits for the next run (a check that needs the token
    meanwhile fetches it within its own budget).

    A rejection of the app's own credentials flags the app and alerts admins;
    an accepted token clears the flag. A transient failure is recorded on the
    app and tried next run.
    """
    now = now or timezone.now()
    horizon = now + timedelta(seconds=job_slot_seconds("refresh_app_tokens") + APP_TOKEN_SLACK_SECONDS)
    outcome: dict[str, str] = {}
    for app in ProviderApp.objects.filter(is_enabled=True):
        label = f"{app.provider}/{app.environment}/{app.name}"
        try:
            client = lifecycle.client_for_app(app=app)
        except KeyError:
            outcome[label] = "no client"
            continue
        try:
            if rate_limit_acquire(app=app) > 0:
                outcome[label] = "deferred (rate limit)"
                continue
            token = client.app_token()
            fetch = getattr(client, "fetch_app_token", None)
            lapses_first = token is not None and token.expires_at is not None and token.expires_at <= horizon
            # Not twice in a run: a token fetched just now is the freshest there is.
            if token is not None and lapses_first and token.issued_at < now and callable(fetch):
                if rate_limit_acquire(app=app) > 0:
                    outcome[label] = "deferred (rate limit)"
                    continue
                # On failure the current token stays cached, usable until it lapses.
                token = fetch()
        except ProviderError as exc:
            text = redact(exc.message or str(exc))[:500]
            if exc.kind == ErrorKind.APP_CREDENTIALS_INVALID:
                lifecycle.app_credentials_rejected(app=app, message=text, now=now)
            else:
                ProviderApp.objects.filter(pk=app.pk).update(last_error=text, last_error_at=now)
            outcome[label] = f"failed ({exc.kind})"
            continue
        except Exception as exc:
            logger.error("App token refresh for provider app %s raised %s.", app.pk, type(exc).__name__, exc_info=True)
            outcome[label] = "error"
            continue
        if token is None:
            outcome[label] = "none"
            continue
        lifecycle.app_credentials_accepted(app=app)
        outcome[label] = "ok"
    return outcome
