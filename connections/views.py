"""Views of the adviser web UI: thin, they validate input and call services or selectors.

Every object an adviser can address is fetched through a scoped queryset from
:mod:`connections.selectors` (``get_object_or_404`` on it), so an id outside
the user's households is a 404, never someone else's data.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import TooManyFieldsSent
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import selectors, services, wording
from .forms import (
    CALLBACK_PARAMETERS,
    CallbackParametersInvalid,
    ClientLinkNewForm,
    CredentialsForm,
    HouseholdFilterForm,
    SourceForm,
    callback_params_clean,
    provider_client_class,
)
from .models import ClientLink, Connection, Household, ProviderApp, Status
from .providers.base import FormField, ProviderError

HOUSEHOLDS_PER_PAGE = 25
# The dashboard shows the most urgent few; the rest are a click away (attention_list).
ATTENTION_ON_DASHBOARD = 10
ATTENTION_PER_PAGE = 50
EVENTS_PER_PAGE = 20
# Hashes of the authorization states started in this browser session: the
# callback must come back to the session that started it.
SESSION_STATES_KEY = "authorization_state_hashes"
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


def _safe_next(request: HttpRequest, default: str) -> str:
    """The ``next`` parameter when it stays on this site, else ``default``."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return default


def _allow_provider_form_actions(response: HttpResponseBase) -> HttpResponseBase:
    # A connect/reconnect form posts here and is redirected to the provider;
    # browsers hold that redirect to the page's CSP form-action, so the
    # providers' origins are allowed on pages that carry such forms.
    origins = selectors.provider_form_action_origins()
    if origins:
        response._csp_update = {"form-action": origins}  # type: ignore[attr-defined]  # noqa: SLF001 - django-csp's hook
    return response


def _private(response: HttpResponseBase) -> HttpResponseBase:
    """Pages whose URL carries a secret (callback, client link): no referrer, no caching."""
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _bind_state(request: HttpRequest, state_hash: str) -> None:
    hashes = [h for h in request.session.get(SESSION_STATES_KEY, []) if h != state_hash]
    request.session[SESSION_STATES_KEY] = [*hashes, state_hash][-SESSION_STATES_MAX:]


def _unbind_state(request: HttpRequest, state_hash: str) -> None:
    hashes = request.session.get(SESSION_STATES_KEY, [])
    if state_hash in hashes:
        request.session[SESSION_STATES_KEY] = [h for h in hashes if h != state_hash]


def _callback_url(request: HttpRequest, provider: str) -> str:
    return request.build_absolute_uri(reverse("connect_callback", args=[provider]))


def _household_url(household: Household | int) -> str:
    pk = household.pk if isinstance(household, Household) else household
    return reverse("household_detail", args=[pk])


def _scoped_household(request: HttpRequest, pk: int) -> Household:
    return get_object_or_404(selectors.household_queryset_for(user=request.user).select_related("firm"), pk=pk)


def _scoped_connection(request: HttpRequest, pk: int) -> Connection:
    return get_object_or_404(selectors.connection_cards_queryset(user=request.user), pk=pk)


def _flow(app: ProviderApp) -> str | None:
    cls = provider_client_class(app)
    return cls.flow if cls is not None else None


def _credential_fields(app: ProviderApp) -> list[FormField]:
    return selectors.provider_credential_fields(app=app)


# --- Dashboard ---------------------------------------------------------------------------


@require_GET
@member_required
def dashboard(request: HttpRequest) -> HttpResponseBase:
    """Counts per status, what needs attention, and the households table."""
    user = request.user
    filter_form = HouseholdFilterForm(request.GET or None)
    search, status = filter_form.search_values()
    page = Paginator(
        selectors.household_table(user=user, search=search, status=status).order_by("name", "id"),
        HOUSEHOLDS_PER_PAGE,
    ).get_page(request.GET.get("page"))
    context = {
        "membership": selectors.membership_for(user=user),
        "counts": selectors.connection_status_counts(user=user),
        "attention": selectors.needs_attention_list(user=user, limit=ATTENTION_ON_DASHBOARD),
        "filter_form": filter_form,
        "page": page,
        "search": search,
        "status_filter": status,
        "severity_status": selectors.SEVERITY_STATUS,
        "now": timezone.now(),
    }
    return _allow_provider_form_actions(render(request, "connections/dashboard.html", context))


@require_GET
@member_required
def attention_list(request: HttpRequest) -> HttpResponseBase:
    """Every connection that needs attention, most urgent first, paginated."""
    page = Paginator(selectors.needs_attention_queryset(user=request.user), ATTENTION_PER_PAGE).get_page(
        request.GET.get("page")
    )
    context = {"page": page, "now": timezone.now()}
    return _allow_provider_form_actions(render(request, "connections/attention_list.html", context))


# --- Household and connection pages ------------------------------------------------------


@require_GET
@member_required
def household_detail(request: HttpRequest, pk: int) -> HttpResponseBase:
    household = _scoped_household(request, pk)
    page = selectors.household_page(user=request.user, household=household)
    context = {"household": household, "page": page, "now": timezone.now()}
    return _allow_provider_form_actions(render(request, "connections/household_detail.html", context))


@require_GET
@member_required
def connection_detail(request: HttpRequest, pk: int) -> HttpResponseBase:
    connection = _scoped_connection(request, pk)
    events = Paginator(selectors.connection_events(connection=connection), EVENTS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    context = {
        "connection": connection,
        "household": connection.household,
        "events": events,
        "health_days": selectors.connection_health_days(connection=connection),
        "links": selectors.client_link_queryset_for(user=request.user)
        .filter(connection=connection)
        .order_by("-created_at")[:10],
        "now": timezone.now(),
    }
    return _allow_provider_form_actions(render(request, "connections/connection_detail.html", context))


@require_POST
@member_required
def connection_check(request: HttpRequest, pk: int) -> HttpResponseBase:
    """Check now. With htmx, the connection's card is swapped in place; without, POST + redirect."""
    connection = _scoped_connection(request, pk)
    default_next = _household_url(connection.household_id)
    if connection.status == Status.DISCONNECTED:
        messages.error(request, "This connection was disconnected; there is nothing to check.")
        return redirect(_safe_next(request, default_next))
    checked = services.connection_check_now(connection=connection, user=request.user)
    connection = _scoped_connection(request, pk)  # re-read with its credentials and accounts
    if getattr(request, "htmx", False):
        context = {"connection": connection, "now": timezone.now(), "check_message": checked.message, "oob_live": True}
        return render(request, "connections/_connection_card.html", context)
    messages.add_message(request, messages.SUCCESS if checked.ok else messages.WARNING, checked.message)
    return redirect(_safe_next(request, default_next))


@require_http_methods(["GET", "POST"])
@member_required
def connection_disconnect(request: HttpRequest, pk: int) -> HttpResponseBase:
    """A confirmation page; the POST disconnects (the lifecycle revokes at the provider)."""
    connection = _scoped_connection(request, pk)
    if connection.status == Status.DISCONNECTED:
        messages.info(request, "This connection is already disconnected.")
        return redirect(_household_url(connection.household_id))
    if request.method == "POST":
        services.connection_disconnect_now(connection=connection, user=request.user)
        messages.success(
            request,
            f"{connection.source_display} for {connection.client.name} "
            "was disconnected. Access was revoked at the provider where it allows it, and the stored "
            "credentials were deleted.",
        )
        return redirect(_household_url(connection.household_id))
    return render(request, "connections/disconnect_confirm.html", {"connection": connection})


@sensitive_post_parameters()
@require_http_methods(["GET", "POST"])
@member_required
def connection_reconnect(request: HttpRequest, pk: int) -> HttpResponseBase:
    """Reconnect: the redirect flow (POST starts it), or the provider's credential form."""
    connection = _scoped_connection(request, pk)
    household = connection.household
    if connection.status == Status.DISCONNECTED:
        messages.info(request, "This connection was disconnected. Connect the account again instead.")
        return redirect(_household_url(household))
    app = connection.provider_app
    flow = _flow(app)
    context: dict[str, Any] = {"connection": connection, "household": household, "flow": flow}
    if flow == "redirect":
        if request.method == "POST":
            return _authorization_redirect(
                request,
                app=app,
                platform=connection.platform,
                household=household,
                client=connection.client,
                connection=connection,
            )
        return _allow_provider_form_actions(render(request, "connections/reconnect.html", context))
    if flow == "form":
        return _credentials_page(
            request,
            app=app,
            platform=connection.platform,
            household=household,
            client=connection.client,
            connection=connection,
            template="connections/reconnect.html",
            context=context,
        )
    context["unavailable"] = True
    return render(request, "connections/reconnect.html", context, status=503)


def _authorization_redirect(
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
            redirect_uri=_callback_url(request, app.provider),
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
        return _private(render(request, error_template, context, status=502))
    _bind_state(request, started.state_hash)
    return HttpResponseRedirect(started.redirect_url)


def _credentials_page(
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

    On any error the form is shown again with the error, secret inputs empty.
    """
    fields = _credential_fields(app)
    form = CredentialsForm(request.POST if request.method == "POST" else None, fields=fields)
    context = {
        **context,
        "credentials_form": form,
        "provider_name": app.get_provider_display(),
        "source": services.source_words(provider_app=app, platform=platform),
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
            )
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
            return redirect(_household_url(household))
    status = 400 if request.method == "POST" else 200
    return render(request, template, context, status=status)


@sensitive_variables("form", "values")
def _credentials_connect(*, form: CredentialsForm, **kwargs: Any) -> Connection:
    values = form.credential_values()
    return services.credentials_connect(fields=values, **kwargs)


# --- Connect ------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@member_required
def household_connect(request: HttpRequest, pk: int) -> HttpResponseBase:
    """Choose client, provider and platform; then the redirect flow or the credential form."""
    household = _scoped_household(request, pk)
    form = SourceForm(request.POST or None, household=household)
    if request.method == "POST" and form.is_valid():
        app: ProviderApp = form.cleaned_data["provider_app"]
        if _flow(app) == "redirect":
            return _authorization_redirect(
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
    return _allow_provider_form_actions(response)


@sensitive_post_parameters()
@require_http_methods(["GET", "POST"])
@member_required
def household_connect_credentials(request: HttpRequest, pk: int) -> HttpResponseBase:
    """The credential form of a form-flow provider (Coinify, Bloquo) for a new connection."""
    household = _scoped_household(request, pk)
    source = SourceForm(request.POST if request.method == "POST" else request.GET, household=household)
    if not source.is_valid() or _flow(source.cleaned_data["provider_app"]) != "form":
        return render(request, "connections/connect_start.html", {"household": household, "form": source}, status=400)
    return _credentials_page(
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
    if provider not in CALLBACK_PARAMETERS:
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
        context = {
            "outcome": "bad_request",
            "title": "This reply cannot be used",
            "message": f"{exc} Start the connection again from the portal.",
        }
        return _private(render(request, "connections/connect_result.html", context, status=400))
    result = services.authorization_complete(
        provider=provider,
        params=params,
        user=request.user,
        bound_state_hashes=request.session.get(SESSION_STATES_KEY, []),
    )
    request_row = result.authorization_request
    if request_row is not None and result.outcome not in {
        services.CallbackOutcome.WRONG_PROVIDER,
        services.CallbackOutcome.WRONG_SESSION,
    }:
        _unbind_state(request, request_row.state_hash)
    link = result.client_link
    if result.outcome == services.CallbackOutcome.APPROVED:
        if link is not None:
            context = {"link": link, "firm": link.household.firm, "message": result.message}
            return _private(render(request, "connections/link/done.html", context))
        messages.success(request, result.message)
        return _private(redirect(_household_url(request_row.household_id)))  # type: ignore[union-attr]
    show_household = (
        link is None
        and request_row is not None
        and request.user.is_authenticated
        and result.outcome not in {services.CallbackOutcome.WRONG_SESSION, services.CallbackOutcome.UNKNOWN}
    )
    context = {
        "outcome": result.outcome.value,
        "title": CALLBACK_TITLES[result.outcome],
        "message": result.message,
        "household": request_row.household if show_household else None,
        "connection": result.connection if show_household else None,
        "client_link": link if result.outcome not in {services.CallbackOutcome.WRONG_SESSION} else None,
    }
    return _private(render(request, "connections/connect_result.html", context, status=result.http_status))


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
}


# --- Client links -------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@member_required
def connection_link_send(request: HttpRequest, pk: int) -> HttpResponseBase:
    """Send the client a reconnect link for this connection (confirmation page, then POST)."""
    connection = _scoped_connection(request, pk)
    household = connection.household
    if connection.status == Status.DISCONNECTED:
        messages.info(request, "This connection was disconnected; send a link for a new connection instead.")
        return redirect(_household_url(household))
    context = {"connection": connection, "household": household, "client": connection.client}
    if request.method == "POST":
        try:
            created = services.client_link_create(
                household=household,
                client=connection.client,
                connection=connection,
                user=request.user,
                base_url=request.build_absolute_uri("/"),
            )
        except ValueError as exc:
            context["error"] = str(exc)
            return render(request, "connections/link_send.html", context, status=400)
        messages.success(
            request,
            f"Reconnect link sent to {created.link.sent_to}. It works until "
            f"{timezone.localtime(created.link.expires_at):%d %b %Y, %H:%M}.",
        )
        return redirect(_safe_next(request, _household_url(household)))
    return render(request, "connections/link_send.html", context)


@require_http_methods(["GET", "POST"])
@member_required
def household_link_new(request: HttpRequest, pk: int) -> HttpResponseBase:
    """Send a client a link to make a new connection."""
    household = _scoped_household(request, pk)
    form = ClientLinkNewForm(request.POST or None, household=household)
    if request.method == "POST" and form.is_valid():
        try:
            created = services.client_link_create(
                household=household,
                client=form.cleaned_data["client"],
                user=request.user,
                provider_app=form.cleaned_data["provider_app"],
                platform=form.cleaned_data["platform"],
                base_url=request.build_absolute_uri("/"),
            )
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(
                request,
                f"Link sent to {created.link.sent_to}. It works until "
                f"{timezone.localtime(created.link.expires_at):%d %b %Y, %H:%M}.",
            )
            return redirect(_household_url(household))
    status = 400 if request.method == "POST" else 200
    return render(request, "connections/link_new.html", {"household": household, "form": form}, status=status)


# CSRF-exempt on purpose. The page is served with `Referrer-Policy: no-referrer`
# (its URL carries the token), and under that policy browsers send
# `Origin: null` with the form's POST, which Django's origin check refuses. The
# signed 256-bit token in the URL does the CSRF token's job: a page that cannot
# read it cannot forge this POST, and whoever has it can use the link directly.
@csrf_exempt
@never_cache
@sensitive_post_parameters()
@require_http_methods(["GET", "POST"])
def client_link(request: HttpRequest, token: str) -> HttpResponseBase:
    """The page a client reaches from the emailed link: no portal login.

    Names the firm, the client and what will be connected, says access is
    read-only, and proceeds into the same authorization flow (or credential
    form) with the link as context. Tampered: 400; expired or used: 410.
    """
    try:
        link = services.client_link_resolve(token=token)
    except services.ClientLinkError as exc:
        context = {
            "message": exc.message,
            "gone": exc.gone,
            "firm": exc.link.household.firm if exc.link is not None else None,
        }
        return _private(render(request, "connections/link/invalid.html", context, status=410 if exc.gone else 400))
    if request.method == "GET":
        services.client_link_open(link=link)
    app = link.provider_app
    flow = _flow(app)
    household = link.household
    client = link.client
    context: dict[str, Any] = {
        "link": link,
        "firm": household.firm,
        "client": client,
        "flow": flow,
        "source": services.source_words(provider_app=app, platform=link.platform),
        "platform_name": wording.platform_name(link.platform),
        "provider_name": app.get_provider_display(),
        "is_reconnect": services.client_link_is_reconnect(link=link),
    }
    if flow == "redirect":
        if request.method == "POST":
            return _private(
                _authorization_redirect(
                    request,
                    app=app,
                    platform=link.platform,
                    household=household,
                    client=client,
                    connection=link.connection,
                    client_link=link,
                    error_template="connections/connect_result.html",
                )
            )
        return _private(_allow_provider_form_actions(render(request, "connections/link/page.html", context)))
    if flow == "form":

        def done(connection: Connection) -> HttpResponseBase:
            return render(
                request,
                "connections/link/done.html",
                {
                    "link": link,
                    "firm": household.firm,
                    "message": f"{connection.source_display} is connected.",
                },
            )

        return _private(
            _credentials_page(
                request,
                app=app,
                platform=link.platform,
                household=household,
                client=client,
                connection=link.connection,
                client_link=link,
                template="connections/link/page.html",
                context=context,
                success=done,
            )
        )
    context["unavailable"] = True
    return _private(render(request, "connections/link/page.html", context, status=503))
