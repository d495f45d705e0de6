"""The client's side of a reconnect request: no portal login, one link for every connection to fix.

The emailed URL carries the token once: opening it binds the request to this
browser's session and redirects to pages named by the request's id alone,
so the token is not in any later URL, page, form or Referer. Those pages
serve only a session the token was opened in (anything else gets a page
asking to use the link from the email), take ordinary CSRF tokens, and run
each connection through the existing per-provider flows with the item's own
client link, which completes once. Everything works without JavaScript.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from .. import services, wording
from ..forms import RequestStopForm
from ..models import ClientLink, Connection, ReconnectRequest, ReconnectRequestItem
from .common import flow_of, private
from .connect import flow_page

# Ids of the requests opened with their token in this browser session.
SESSION_REQUESTS_KEY = "reconnect_request_ids"
SESSION_REQUESTS_MAX = 10


def _page(response: HttpResponseBase) -> HttpResponseBase:
    """The request's own pages: nothing secret in their URLs, so same-origin referrers (forms keep a real
    Origin for the CSRF check); never cached or indexed."""
    response["Referrer-Policy"] = "same-origin"
    response["Cache-Control"] = "no-store"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


@dataclass(frozen=True)
class ItemRow:
    item: ReconnectRequestItem
    flow: str | None


def _bind(request: HttpRequest, reconnect_request: ReconnectRequest) -> None:
    ids = [i for i in request.session.get(SESSION_REQUESTS_KEY, []) if i != str(reconnect_request.pk)]
    request.session[SESSION_REQUESTS_KEY] = [*ids, str(reconnect_request.pk)][-SESSION_REQUESTS_MAX:]


def _bound(request: HttpRequest, pk: Any) -> ReconnectRequest | None:
    if str(pk) not in request.session.get(SESSION_REQUESTS_KEY, []):
        return None
    return ReconnectRequest.objects.select_related("household__firm", "client", "created_by").filter(pk=pk).first()


def _unbound(request: HttpRequest) -> HttpResponseBase:
    return _page(render(request, "connections/request/unbound.html", status=403))


@never_cache
@require_http_methods(["GET"])
def reconnect_request_open(request: HttpRequest, token: str) -> HttpResponseBase:
    """The emailed link: check the token, bind the request to this session, and go on without the token."""
    try:
        reconnect_request = services.reconnect_request_resolve(token=token)
    except services.ReconnectRequestError as exc:
        firm = exc.request.household.firm if exc.request is not None else None
        refusal = {"message": exc.message, "gone": exc.gone, "firm": firm}
        return private(render(request, "connections/link/invalid.html", refusal, status=410 if exc.gone else 400))
    _bind(request, reconnect_request)
    if request.GET.get("then") == "stop":
        return private(redirect("reconnect_request_stop", pk=reconnect_request.pk))
    services.reconnect_request_open(request=reconnect_request)
    return private(redirect("reconnect_request_page", pk=reconnect_request.pk))


def _gone(request: HttpRequest, reconnect_request: ReconnectRequest) -> HttpResponseBase | None:
    """The page for a request that is finished, expired, replaced or stopped; ``None`` while it can be worked on."""
    status = reconnect_request.status
    firm = reconnect_request.household.firm
    if status == ReconnectRequest.RequestStatus.PAUSED:
        return _page(render(request, "connections/request/stopped.html", {"firm": firm, "req": reconnect_request}))
    if status == ReconnectRequest.RequestStatus.EXPIRED:
        refusal = {"message": "This link has expired. Ask your adviser to send a new one.", "gone": True, "firm": firm}
        return _page(render(request, "connections/link/invalid.html", refusal, status=410))
    if status == ReconnectRequest.RequestStatus.SUPERSEDED:
        refusal = {"message": services.reconnect_client.LINK_REPLACED, "gone": True, "firm": firm}
        return _page(render(request, "connections/link/invalid.html", refusal, status=410))
    if status == ReconnectRequest.RequestStatus.MUTED:
        refusal = {"message": services.reconnect_client.LINK_NOT_NEEDED, "gone": True, "firm": firm}
        return _page(render(request, "connections/link/invalid.html", refusal, status=410))
    return None


def _current(request: HttpRequest, pk: Any) -> ReconnectRequest | HttpResponseBase:
    """The request this browser was let into, brought up to date; or the page that says why it cannot be used."""
    reconnect_request = _bound(request, pk)
    if reconnect_request is None:
        return _unbound(request)
    services.reconnect_requests_sync(requests=[reconnect_request])
    gone = _gone(request, reconnect_request)
    return gone if gone is not None else reconnect_request


@never_cache
@require_http_methods(["GET"])
def reconnect_request_page(request: HttpRequest, pk: Any) -> HttpResponseBase:
    """Every connection to fix, which are done, and a button for the next one."""
    reconnect_request = _current(request, pk)
    if not isinstance(reconnect_request, ReconnectRequest):
        return reconnect_request
    items = list(
        reconnect_request.items.select_related("connection__provider_app", "client_link").defer(
            "connection__provider_app__client_secret"
        )
    )
    rows = [ItemRow(item=item, flow=flow_of(item.connection.provider_app)) for item in items]
    todo = [row for row in rows if row.item.status == ReconnectRequestItem.ItemStatus.OPEN]
    context = {
        "req": reconnect_request,
        "firm": reconnect_request.household.firm,
        "client": reconnect_request.client,
        "rows": rows,
        "todo": todo,
        "done_count": len(rows) - len(todo),
        "finished": not todo,
        "next_pk": todo[0].item.pk if todo else None,
    }
    return _page(render(request, "connections/request/page.html", context))


def _open_item(reconnect_request: ReconnectRequest, item_pk: int) -> ReconnectRequestItem:
    return get_object_or_404(
        reconnect_request.items.select_related("connection__provider_app", "connection__client", "client_link").defer(
            "connection__provider_app__client_secret"
        ),
        pk=item_pk,
    )


@never_cache
@sensitive_post_parameters()
@require_http_methods(["GET", "POST"])
def reconnect_request_item(request: HttpRequest, pk: Any, item_pk: int) -> HttpResponseBase:
    """Fix one connection: the provider's redirect flow (POST starts it) or its credential form."""
    reconnect_request = _current(request, pk)
    if not isinstance(reconnect_request, ReconnectRequest):
        return reconnect_request
    item = _open_item(reconnect_request, item_pk)
    if item.status != ReconnectRequestItem.ItemStatus.OPEN or item.client_link.status not in (
        ClientLink.LinkStatus.SENT,
        ClientLink.LinkStatus.OPENED,
    ):
        return _page(redirect("reconnect_request_page", pk=reconnect_request.pk))
    connection, link = item.connection, item.client_link
    app = connection.provider_app
    flow = flow_of(app)
    household = reconnect_request.household
    context: dict[str, Any] = {
        "req": reconnect_request,
        "item": item,
        "link": link,
        "firm": household.firm,
        "client": reconnect_request.client,
        "flow": flow,
        "source": connection.source_display,
        "platform_name": wording.platform_name(connection.platform),
        "provider_name": app.get_provider_display(),
    }
    if request.method == "GET":
        services.client_link_open(link=link)

    def done(fixed: Connection) -> HttpResponseBase:
        services.reconnect_requests_sync(requests=[reconnect_request])
        return render(
            request,
            "connections/request/item_done.html",
            {"req": reconnect_request, "firm": household.firm, "message": f"{fixed.source_display} is connected."},
        )

    return _page(
        flow_page(
            request,
            app=app,
            platform=connection.platform,
            household=household,
            client=reconnect_request.client,
            connection=connection,
            client_link=link,
            template="connections/request/item.html",
            context=context,
            success=done,
            form_actions=False,
        )
    )


@never_cache
@require_http_methods(["GET", "POST"])
def reconnect_request_stop(request: HttpRequest, pk: Any) -> HttpResponseBase:
    """ "This is not me" or "please stop": pauses the request and tells the adviser. No unsubscribe list."""
    reconnect_request = _bound(request, pk)
    if reconnect_request is None:
        return _unbound(request)
    firm = reconnect_request.household.firm
    if reconnect_request.status == ReconnectRequest.RequestStatus.PAUSED:
        return _page(render(request, "connections/request/stopped.html", {"firm": firm, "req": reconnect_request}))
    form = RequestStopForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        services.reconnect_request_stop(request=reconnect_request, reason=form.cleaned_data["reason"])
        return _page(render(request, "connections/request/stopped.html", {"firm": firm, "req": reconnect_request}))
    context = {"form": form, "firm": firm, "req": reconnect_request, "client": reconnect_request.client}
    return _page(
        render(request, "connections/request/stop.html", context, status=400 if request.method == "POST" else 200)
    )
