"""Connecting a source: the connect form, credential forms, redirect flows and the provider's callback."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import TooManyFieldsSent
from django.http import Http404, HttpRequest, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods

from .. import services
from ..addresses import limit_subject
from ..forms import (
    CallbackParametersInvalid,
    CredentialsForm,
    SourceForm,
    callback_parameters,
    callback_params_clean,
)
from ..models import ClientLink, Connection, Household, ProviderApp
from ..providers.errors import ProviderError
from .common import (
    SESSION_STATES_KEY,
    SESSION_USED_STATES_KEY,
    allow_provider_form_actions,
    bind_state,
    callback_url,
    credential_form,
    flow_of,
    household_url,
    member_required,
    private,
    scoped_household,
    too_many,
    unbind_state,
)


def authorization_redirect(
    request: HttpRequest,
    *,
    app: ProviderApp,
    platform: str,
    household: Household,
    client: Any,
    connection: Connection | None = None,
    client_link: ClientLink | None = None,
    error_template: str = "connections/connect_result.html",
) -> HttpResponseBase:
    try:
        started = services.authorization_start(
            provider_app=app,
            platform=platform,
            household=household,
            client=client,
            redirect_uri=callback_url(request, app.provider),
            user=request.user if client_link is None else None,
            connection=connection,
            client_link=client_link,
        )
    except ProviderError:
        context = {
            "outcome": "error",
            "title": "The provider could not be reached",
            "message": f"{app.get_provider_display()} could not start the authorization just now. Nothing was "
            "changed; try again in a few minutes.",
            "household": household if client_link is None else None,
            "client_link": client_link,
        }
        return private(render(request, error_template, context, status=502))
    bind_state(request, started.state_hash)
    return HttpResponseRedirect(started.redirect_url)


def sandbox_sign_ins_url(app: ProviderApp) -> str:
    """Where a sandbox app's demo sign-ins are listed, in development; "" anywhere else.

    The sandbox lists them at ``/_hints/`` (only while DEBUG is on); a form
    for a real provider never links there.
    """
    base = settings.SANDBOX_BASE_URL.rstrip("/")
    if not (settings.DEBUG and getattr(settings, "SANDBOX_SIGN_IN_HINTS", True)):
        return ""
    if not app.base_url.startswith(f"{base}/"):
        return ""
    return f"{base}/_hints/?provider={app.provider}"


def credentials_page(
    request: HttpRequest,
    *,
    app: ProviderApp,
    platform: str,
    household: Household,
    client: Any,
    template: str,
    context: dict[str, Any],
    connection: Connection | None = None,
    client_link: ClientLink | None = None,
    success: Callable[[Connection], HttpResponseBase] | None = None,
) -> HttpResponseBase:
    """GET shows the provider's credential form; POST connects through the service.

    On any error the form is shown again with the error, secret inputs empty:
    a 429 when too many wrong attempts came from this address or user (the
    provider was not asked). A client link whose attempts are spent shows
    that it is locked instead (410).
    """
    form = CredentialsForm(
        request.POST if request.method == "POST" else None,
        layout=credential_form(app),
        audience="client" if client_link is not None else "adviser",
    )
    context = {
        **context,
        "credentials_form": form,
        "provider_name": app.get_provider_display(),
        "source": services.source_words(provider_app=app, platform=platform),
        "sandbox_sign_ins_url": sandbox_sign_ins_url(app),
    }
    if request.method == "POST" and form.is_valid():
        try:
            result = _credentials_connect(
                form=form,
                provider_app=app,
                platform=platform,
                household=household,
                client=client,
                user=request.user if client_link is None else None,
                connection=connection,
                client_link=client_link,
                address=limit_subject(request),
            )
        except services.Throttled as exc:
            form.add_error(None, exc.message)
            return too_many(render(request, template, context), exc.retry_after)
        except services.ClientLinkLocked as exc:
            refusal = {"message": exc.message, "gone": True, "firm": household.firm}
            return render(request, "connections/link/invalid.html", refusal, status=410)
        except services.CredentialsRejected as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        except services.ReconnectMismatch:
            form.add_error(
                None,
                f"These credentials belong to a different {app.get_provider_display()} account than the one "
                "this connection was made with, so they were refused and nothing changed.",
            )
        else:
            if success is not None:
                return success(result)
            verb = "reconnected" if connection is not None else "connected"
            messages.success(
                request,
                f"{result.source_display} {verb} for {result.client.name}.",
            )
            return redirect(household_url(household))
    status = 400 if request.method == "POST" else 200
    return render(request, template, context, status=status)


def flow_page(
    request: HttpRequest,
    *,
    app: ProviderApp,
    platform: str,
    household: Household,
    client: Any,
    connection: Connection | None,
    template: str,
    context: dict[str, Any],
    client_link: ClientLink | None = None,
    success: Callable[[Connection], HttpResponseBase] | None = None,
    form_actions: bool = True,
) -> HttpResponseBase:
    """A connect or reconnect page in the provider's flow, for advisers and clients alike.

    Redirect flow: POST starts the authorization, GET shows ``template`` (with
    the provider's origins allowed as form actions unless ``form_actions`` is
    off). Credential form: :func:`credentials_page`. A provider with no client
    in this portal: ``template`` with ``unavailable``, status 503.
    """
    flow = flow_of(app)
    who: dict[str, Any] = {
        "app": app,
        "platform": platform,
        "household": household,
        "client": client,
        "connection": connection,
        "client_link": client_link,
    }
    if flow == "redirect":
        if request.method == "POST":
            return authorization_redirect(request, **who)
        page = render(request, template, context)
        return allow_provider_form_actions(page) if form_actions else page
    if flow == "form":
        return credentials_page(request, **who, template=template, context=context, success=success)
    context["unavailable"] = True
    return render(request, template, context, status=503)


@sensitive_variables("form", "values")
def _credentials_connect(*, form: CredentialsForm, **kwargs: Any) -> Connection:
    values = form.credential_values()
    return services.credentials_connect(fields=values, **kwargs)


# --- Connect ------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@member_required
def household_connect(request: HttpRequest, pk: int) -> HttpResponseBase:
    """Choose client, provider and platform; then the redirect flow or the credential form."""
    household = scoped_household(request, pk)
    form = SourceForm(request.POST or None, household=household)
    if request.method == "POST" and form.is_valid():
        app: ProviderApp = form.cleaned_data["provider_app"]
        if flow_of(app) == "redirect":
            return authorization_redirect(
                request,
                app=app,
                platform=form.cleaned_data["platform"],
                household=household,
                client=form.cleaned_data["client"],
            )
        query = request.POST.copy()
        query.pop("csrfmiddlewaretoken", None)
        return redirect(f"{reverse('household_connect_credentials', args=[household.pk])}?{query.urlencode()}")
    status = 400 if request.method == "POST" else 200
    response = render(request, "connections/connect_start.html", {"household": household, "form": form}, status=status)
    return allow_provider_form_actions(response)


@sensitive_post_parameters()
@require_http_methods(["GET", "POST"])
@member_required
def household_connect_credentials(request: HttpRequest, pk: int) -> HttpResponseBase:
    """The credential form of a form-flow provider (Coinify, Bloquo) for a new connection."""
    household = scoped_household(request, pk)
    source = SourceForm(request.POST if request.method == "POST" else request.GET, household=household)
    if not source.is_valid() or flow_of(source.cleaned_data["provider_app"]) != "form":
        return render(request, "connections/connect_start.html", {"household": household, "form": source}, status=400)
    return credentials_page(
        request,
        app=source.cleaned_data["provider_app"],
        platform=source.cleaned_data["platform"],
        household=household,
        client=source.cleaned_data["client"],
        template="connections/connect_credentials.html",
        context={"household": household, "source_form": source, "client": source.cleaned_data["client"]},
    )


# --- Provider callbacks -------------------------------------------------------------------


@never_cache
@require_GET
def connect_callback(request: HttpRequest, provider: str) -> HttpResponseBase:
    """Where a provider sends the browser back after a redirect flow.

    Public (a client-link flow has no login); the service checks the state,
    the provider (mix-up defence), the session and user binding, single use
    and expiry. Unknown, repeated or oversized parameters are a 400.
    """
    if not callback_parameters(provider):
        raise Http404("No callback for this provider.")
    try:
        try:
            query = request.GET
        except TooManyFieldsSent:
            # More parameters than DATA_UPLOAD_MAX_NUMBER_FIELDS: Django refuses
            # to parse them; refused here like any other oversized reply, so the
            # page keeps its no-referrer policy.
            raise CallbackParametersInvalid("The reply is too long.") from None
        params = callback_params_clean(
            provider=provider, query=query, query_string=request.META.get("QUERY_STRING", "")
        )
    except CallbackParametersInvalid as exc:
        refusal = {
            "outcome": "bad_request",
            "title": "This reply cannot be used",
            "message": f"{exc} Start the connection again from the portal.",
        }
        return private(render(request, "connections/connect_result.html", refusal, status=400))
    result = services.authorization_complete(
        provider=provider,
        params=params,
        user=request.user,
        bound_state_hashes=request.session.get(SESSION_STATES_KEY, []),
        used_state_hashes=request.session.get(SESSION_USED_STATES_KEY, []),
    )
    request_row = result.authorization_request
    if request_row is not None and result.outcome not in {
        services.CallbackOutcome.WRONG_PROVIDER,
        services.CallbackOutcome.WRONG_SESSION,
        services.CallbackOutcome.BUSY,  # still this session's to finish, with the same reply
    }:
        unbind_state(request, request_row.state_hash)
    link = result.client_link
    if result.outcome == services.CallbackOutcome.APPROVED:
        if link is not None:
            done = {"link": link, "firm": link.household.firm, "message": result.message}
            return private(render(request, "connections/link/done.html", done))
        assert request_row is not None  # an approval always names its request
        messages.success(request, result.message)
        return private(redirect(household_url(request_row.household_id)))
    show_household = (
        link is None
        and request_row is not None
        and request.user.is_authenticated
        and result.outcome not in {services.CallbackOutcome.WRONG_SESSION, services.CallbackOutcome.UNKNOWN}
    )
    context: dict[str, Any] = {
        "outcome": result.outcome.value,
        "title": CALLBACK_TITLES[result.outcome],
        "message": result.message,
        "household": request_row.household if show_household and request_row is not None else None,
        "connection": result.connection if show_household else None,
        "client_link": link if result.outcome not in {services.CallbackOutcome.WRONG_SESSION} else None,
    }
    response = render(request, "connections/connect_result.html", context, status=result.http_status)
    if result.outcome == services.CallbackOutcome.BUSY:
        response["Retry-After"] = str(max(math.ceil(result.retry_after), 1))
    return private(response)


CALLBACK_TITLES: dict[services.CallbackOutcome, str] = {
    services.CallbackOutcome.APPROVED: "Connected",
    services.CallbackOutcome.DENIED: "Access was not granted",
    services.CallbackOutcome.ERROR: "The provider reported a problem",
    services.CallbackOutcome.EXPIRED: "This authorization expired",
    services.CallbackOutcome.REPLAYED: "This reply was already used",
    services.CallbackOutcome.UNKNOWN: "This reply cannot be used",
    services.CallbackOutcome.WRONG_PROVIDER: "This reply came from the wrong provider",
    services.CallbackOutcome.WRONG_SESSION: "This authorization was started elsewhere",
    services.CallbackOutcome.MISMATCH: "A different account signed in",
    services.CallbackOutcome.DUPLICATE: "Already connected",
    services.CallbackOutcome.REMOVED: "This connection was removed",
    services.CallbackOutcome.NO_ACCESS: "You no longer have access to this household",
    services.CallbackOutcome.LINK_GONE: "This link can no longer be used",
    services.CallbackOutcome.BUSY: "The provider is busy: try again in a moment",
}
