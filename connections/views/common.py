"""What the views share: sign-in and firm checks, scoped lookups, private pages, state binding."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urljoin

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponseBase
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from .. import selectors
from ..forms import (
    provider_client_class,
)
from ..models import Connection, Household, ProviderApp
from ..providers.base import CredentialForm

HOUSEHOLDS_PER_PAGE = 25
# The dashboard shows the most urgent few; the rest are a click away (attention_list).
ATTENTION_ON_DASHBOARD = 10
ATTENTION_PER_PAGE = 50
EVENTS_PER_PAGE = 20
# Hashes of the authorization states started in this browser session: the
# callback must come back to the session that started it.
SESSION_STATES_KEY = "authorization_state_hashes"
# The states this browser already used, so a replay here reads "already used"
# rather than "started elsewhere".
SESSION_USED_STATES_KEY = "authorization_used_state_hashes"
SESSION_STATES_MAX = 10


# --- Helpers ---------------------------------------------------------------------------


def member_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Signed in and attached to a firm; otherwise the sign-in page or a clear explanation."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if selectors.membership_for(user=request.user) is None:
            return render(request, "registration/no_firm.html", status=403)
        return view(request, *args, **kwargs)

    return wrapper


def safe_next(request: HttpRequest, default: str) -> str:
    """The ``next`` parameter when it stays on this site, else ``default``."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return default


def allow_provider_form_actions(response: HttpResponseBase) -> HttpResponseBase:
    # A connect/reconnect form posts here and is redirected to the provider;
    # browsers hold that redirect to the page's CSP form-action, so the
    # providers' origins are allowed on pages that carry such forms.
    origins = selectors.provider_form_action_origins()
    if origins:
        response._csp_update = {"form-action": origins}  # type: ignore[attr-defined]  # noqa: SLF001 - django-csp's hook
    return response


def private(response: HttpResponseBase) -> HttpResponseBase:
    """Pages whose URL carries a secret (callback, client link): no referrer, no caching."""
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def bind_state(request: HttpRequest, state_hash: str) -> None:
    hashes = [h for h in request.session.get(SESSION_STATES_KEY, []) if h != state_hash]
    request.session[SESSION_STATES_KEY] = [*hashes, state_hash][-SESSION_STATES_MAX:]


def unbind_state(request: HttpRequest, state_hash: str) -> None:
    hashes = request.session.get(SESSION_STATES_KEY, [])
    if state_hash in hashes:
        request.session[SESSION_STATES_KEY] = [h for h in hashes if h != state_hash]
        used = [h for h in request.session.get(SESSION_USED_STATES_KEY, []) if h != state_hash]
        request.session[SESSION_USED_STATES_KEY] = [*used, state_hash][-SESSION_STATES_MAX:]


def too_many(response: HttpResponseBase, retry_after: float) -> HttpResponseBase:
    """A 429 answer to an attempt over its limit, saying in ``Retry-After`` when the next one is free."""
    response.status_code = 429
    response["Retry-After"] = str(max(math.ceil(retry_after), 1))
    return response


def callback_url(request: HttpRequest, provider: str) -> str:
    """The portal's callback for ``provider``, on ``PORTAL_BASE_URL``.

    Never on the request's ``Host``: the provider sends the client back there
    with the authorization, so a forged Host would hand it to another server.
    (``request`` is taken for the callers' sake and deliberately not read.)
    """
    return urljoin(settings.PORTAL_BASE_URL.rstrip("/") + "/", reverse("connect_callback", args=[provider]))


def household_url(household: Household | int) -> str:
    pk = household.pk if isinstance(household, Household) else household
    return reverse("household_detail", args=[pk])


def scoped_household(request: HttpRequest, pk: int) -> Household:
    household = selectors.household_read(user=request.user, pk=pk)
    if household is None:
        raise Http404("No household matches the given query.")
    return household


def scoped_connection(request: HttpRequest, pk: int) -> Connection:
    return get_object_or_404(selectors.connection_cards_queryset(user=request.user), pk=pk)


def flow_of(app: ProviderApp) -> str | None:
    cls = provider_client_class(app)
    return cls.flow if cls is not None else None


def credential_form(app: ProviderApp) -> CredentialForm:
    return selectors.provider_credential_form(app=app)
