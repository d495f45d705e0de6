"""What an adviser does to one connection: check now, disconnect, reconnect."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from .. import services
from ..models import Status
from .common import (
    flow_of,
    household_url,
    member_required,
    safe_next,
    scoped_connection,
    too_many,
)
from .connect import flow_page
from .pages import card_context


@require_POST
@member_required
def connection_check(request: HttpRequest, pk: int) -> HttpResponseBase:
    """Check now. With htmx, the connection's card is swapped in place; without, POST + redirect."""
    connection = scoped_connection(request, pk)
    default_next = household_url(connection.household_id)
    if connection.status == Status.DISCONNECTED:
        messages.error(request, "This connection was disconnected; there is nothing to check.")
        return redirect(safe_next(request, default_next))
    try:
        checked = services.connection_check_now(connection=connection, user=request.user)
    except services.Throttled as exc:
        # Not checked, and nothing asked of the provider: the card says why and when to try again.
        if getattr(request, "htmx", False):
            context = card_context(connection, check_message=exc.message, oob_live=True)
            return too_many(render(request, "connections/_connection_card.html", context), exc.retry_after)
        messages.warning(request, exc.message)
        return redirect(safe_next(request, default_next))
    connection = scoped_connection(request, pk)  # re-read with its credentials and accounts
    if getattr(request, "htmx", False):
        context = card_context(connection, check_message=checked.message, oob_live=True)
        return render(request, "connections/_connection_card.html", context)
    messages.add_message(request, messages.SUCCESS if checked.ok else messages.WARNING, checked.message)
    return redirect(safe_next(request, default_next))


@require_http_methods(["GET", "POST"])
@member_required
def connection_disconnect(request: HttpRequest, pk: int) -> HttpResponseBase:
    """A confirmation page; the POST disconnects (the lifecycle revokes at the provider)."""
    connection = scoped_connection(request, pk)
    if connection.status == Status.DISCONNECTED:
        messages.info(request, "This connection is already disconnected.")
        return redirect(household_url(connection.household_id))
    if request.method == "POST":
        services.connection_disconnect_now(connection=connection, user=request.user)
        messages.success(
            request,
            f"{connection.source_display} for {connection.client.name} "
            "was disconnected. Access was revoked at the provider where it allows it, and the stored "
            "credentials were deleted.",
        )
        return redirect(household_url(connection.household_id))
    return render(request, "connections/disconnect_confirm.html", {"connection": connection})


@sensitive_post_parameters()
@require_http_methods(["GET", "POST"])
@member_required
def connection_reconnect(request: HttpRequest, pk: int) -> HttpResponseBase:
    """Reconnect: the redirect flow (POST starts it), or the provider's credential form."""
    connection = scoped_connection(request, pk)
    household = connection.household
    if connection.status == Status.DISCONNECTED:
        messages.info(request, "This connection was disconnected. Connect the account again instead.")
        return redirect(household_url(household))
    app = connection.provider_app
    context: dict[str, Any] = {"connection": connection, "household": household, "flow": flow_of(app)}
    return flow_page(
        request,
        app=app,
        platform=connection.platform,
        household=household,
        client=connection.client,
        connection=connection,
        template="connections/reconnect.html",
        context=context,
    )
