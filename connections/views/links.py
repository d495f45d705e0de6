"""Client links: sending them, and the page a client reaches without a login."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from .. import services, wording
from ..forms import (
    ClientLinkNewForm,
)
from ..models import Connection, Status
from ..services.client_links import LinkEmailFailed
from .common import (
    flow_of,
    household_url,
    member_required,
    private,
    safe_next,
    scoped_connection,
    scoped_household,
    too_many,
)
from .connect import flow_page

# --- Client links -------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@member_required
def connection_link_send(request: HttpRequest, pk: int) -> HttpResponseBase:
    """Send the client a reconnect link for this connection (confirmation page, then POST)."""
    connection = scoped_connection(request, pk)
    household = connection.household
    if connection.status == Status.DISCONNECTED:
        messages.info(request, "This connection was disconnected; send a link for a new connection instead.")
        return redirect(household_url(household))
    context: dict[str, Any] = {"connection": connection, "household": household, "client": connection.client}
    if request.method == "POST":
        try:
            created = services.client_link_create(
                household=household,
                client=connection.client,
                connection=connection,
                user=request.user,
            )
        except ValueError as exc:
            context["error"] = str(exc)
            return render(request, "connections/link_send.html", context, status=400)
        except services.Throttled as exc:
            context["error"] = exc.message
            return too_many(render(request, "connections/link_send.html", context), exc.retry_after)
        except LinkEmailFailed as exc:
            # The mail server is at fault, not the adviser: nothing was kept, and the same button retries.
            context["error"] = exc.message
            return render(request, "connections/link_send.html", context, status=503)
        messages.success(
            request,
            f"Reconnect link sent to {created.link.sent_to}. It works until "
            f"{timezone.localtime(created.link.expires_at):%d %b %Y, %H:%M}.",
        )
        return redirect(safe_next(request, household_url(household)))
    return render(request, "connections/link_send.html", context)


@require_http_methods(["GET", "POST"])
@member_required
def household_link_new(request: HttpRequest, pk: int) -> HttpResponseBase:
    """Send a client a link to make a new connection."""
    household = scoped_household(request, pk)
    form = ClientLinkNewForm(request.POST or None, household=household)
    if request.method == "POST" and form.is_valid():
        try:
            created = services.client_link_create(
                household=household,
                client=form.cleaned_data["client"],
                user=request.user,
                provider_app=form.cleaned_data["provider_app"],
                platform=form.cleaned_data["platform"],
            )
        except ValueError as exc:
            form.add_error(None, str(exc))
        except services.Throttled as exc:
            form.add_error(None, exc.message)
            page = render(request, "connections/link_new.html", {"household": household, "form": form})
            return too_many(page, exc.retry_after)
        except LinkEmailFailed as exc:
            form.add_error(None, exc.message)
            return render(request, "connections/link_new.html", {"household": household, "form": form}, status=503)
        else:
            messages.success(
                request,
                f"Link sent to {created.link.sent_to}. It works until "
                f"{timezone.localtime(created.link.expires_at):%d %b %Y, %H:%M}.",
            )
            return redirect(household_url(household))
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
        refusal = {
            "message": exc.message,
            "gone": exc.gone,
            "completed": exc.link is not None and exc.link.status == "completed",
            "firm": exc.link.household.firm if exc.link is not None else None,
        }
        return private(render(request, "connections/link/invalid.html", refusal, status=410 if exc.gone else 400))
    if request.method == "GET":
        services.client_link_open(link=link)
    app = link.provider_app
    flow = flow_of(app)
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

    return private(
        flow_page(
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
