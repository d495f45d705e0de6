"""The adviser's side of reconnect requests and notification hygiene.

"Ask the client to reconnect" from a household page (sent at once) or from
the attention list (one, several or every household that needs it: sent in
the background within the firm's hourly limit, with a progress page);
snoozing and muting a connection's problem; the user's digest settings.
Every page previews the exact email and who gets what before anything goes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.models import User as AuthUser
from django.http import Http404, HttpRequest, HttpResponseBase, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from .. import problems, request_selectors, selectors, services
from ..forms import NotificationSettingsForm, SnoozeForm
from ..models import Household, NotificationSettings, Status
from .common import household_url, member_required, safe_next, scoped_connection, scoped_household

BULK_PROGRESS_REFRESH_SECONDS = 5


def _preview_context(request: HttpRequest, households: list[Household], *, bulk: bool) -> dict[str, Any]:
    plans = services.reconnect_request_plans(households=households)
    sendable = [plan for plan in plans if not plan.blocker]
    # A client who stopped an earlier request is written to again only if the adviser ticks it, one
    # household at a time; a bulk send skips them.
    confirmable = [] if bulk else [plan for plan in plans if plan.blocker and plan.blocker == plan.stop_words]
    # Everyone who would get an email, with its exact text (built from the plans already read: no query each).
    emails = {
        id(plan): services.reconnect_request_preview(plan=plan, user=request.user) for plan in [*sendable, *confirmable]
    }
    return {
        "plans": plans,
        "rows": [(plan, emails.get(id(plan))) for plan in plans],
        "sendable": sendable,
        "confirmable": confirmable,
        "emails": list(emails.values()),
        "limit": services.reconnect_requests.requests_per_hour(
            services.reconnect_requests.firm_policy(households[0].firm_id) if households else None
        ),
    }


@require_http_methods(["GET", "POST"])
@member_required
def household_reconnect_request(request: HttpRequest, pk: int) -> HttpResponseBase:
    """Preview (GET), then send (POST) one request per client of this household whose connections need them."""
    household = scoped_household(request, pk)
    if request.method == "POST":
        # Ids of the clients ticked "send anyway"; anything else is ignored (only this household's clients
        # have a plan, so another household's id does nothing).
        despite = {int(v) for v in request.POST.getlist("send_anyway") if v.isdigit() and len(v) < 19}
        results = services.reconnect_requests_create(
            households=[household], user=request.user, send_despite_stop=despite
        )
        for result in results:
            if result.outcome == "sent":
                note = f" {result.note}" if result.note else ""
                messages.success(
                    request, f"Reconnect request sent to {result.client.name} ({result.client.email}).{note}"
                )
            else:
                messages.info(request, result.message)
        if not results:
            messages.info(request, "Nothing in this household needs the client now.")
        return redirect(household_url(household))
    context = {
        "household": household,
        "households": [household],
        "bulk": False,
        **_preview_context(request, [household], bulk=False),
    }
    return render(request, "connections/reconnect_preview.html", context)


def _chosen_households(request: HttpRequest, values: QueryDict, *, include_quiet: bool = False) -> list[Household]:
    """The chosen households (or, with ``all``, every one) among the user's that need the client now.

    ``include_quiet``: also those whose only such connections are muted or snoozed (shown, never asked).
    """
    scoped = request_selectors.households_needing_client(user=request.user, include_quiet=include_quiet)
    if values.get("all"):
        return list(scoped.order_by("name", "id"))
    ids = {int(v) for v in values.getlist("household") if v.isdigit() and len(v) < 19}
    return list(scoped.filter(pk__in=ids).order_by("name", "id"))


@require_http_methods(["GET", "POST"])
@member_required
def reconnect_requests_ask(request: HttpRequest) -> HttpResponseBase:
    """From the attention list: preview asking the chosen households (or all that need it); POST sends them."""
    source = request.POST if request.method == "POST" else request.GET
    households = _chosen_households(request, source)
    if request.method == "POST":
        if not households:
            messages.info(request, "None of the chosen households needs the client any more.")
            return redirect("attention_list")
        bulk = services.reconnect_bulk_start(user=request.user, households=households)
        return redirect("reconnect_bulk", pk=bulk.pk)
    context = {"households": households, "bulk": True, "everything": bool(source.get("all"))}
    if households:
        asked = {h.pk for h in households}
        # Households left out because everything of theirs is muted or snoozed: listed as skipped, so the
        # adviser sees why "Ask all" counts fewer than the attention list shows.
        quiet_only = [h for h in _chosen_households(request, source, include_quiet=True) if h.pk not in asked]
        context.update(_preview_context(request, [*households, *quiet_only], bulk=True))
    return render(request, "connections/reconnect_preview.html", context, status=200 if households else 400)


@require_GET
@member_required
def reconnect_bulk(request: HttpRequest, pk: uuid.UUID) -> HttpResponseBase:
    """Progress of a bulk request. Reloads itself every few seconds (a Refresh header, no script) until done."""
    bulk = request_selectors.bulk_for(user=request.user, pk=pk)
    if bulk is None:
        raise Http404("No such bulk request.")
    response = render(request, "connections/reconnect_bulk.html", {"bulk": bulk, "now": timezone.now()})
    if bulk.status != bulk.BulkStatus.DONE:
        response["Refresh"] = str(BULK_PROGRESS_REFRESH_SECONDS)
    return response


@require_POST
@member_required
def connection_quiet(request: HttpRequest, pk: int) -> HttpResponseBase:
    """Snooze a connection's problem for a day, a week or until a date; mute or unmute the connection; or wake it."""
    connection = scoped_connection(request, pk)
    back = safe_next(request, reverse("attention_list"))
    form = SnoozeForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(str(e) for field in form.errors.values() for e in field)
        messages.error(request, f"Not snoozed: {errors}")
        return redirect(back)
    now = timezone.now()
    action = form.cleaned_data["action"]
    name = f"{connection.source_display} for {connection.client.name}"
    if action == "wake":
        problems.connection_wake(connection=connection)
        messages.success(request, f"{name} is back in the attention list and digests.")
        return redirect(back)
    if action in ("mute", "unmute") and connection.status == Status.DISCONNECTED:
        messages.info(request, f"{name} is disconnected: there is nothing to mute.")
        return redirect(back)
    if action == "unmute":
        if problems.connection_unmute(connection=connection):
            messages.success(request, f"{name} is no longer muted: it is back in the attention list and digests.")
        else:
            messages.info(request, f"{name} was not muted.")
        return redirect(back)
    if action == "mute":
        # Any live connection, healthy or not: the mute is the connection's, so it also covers a break to come.
        if not problems.connection_mute(connection=connection, user=request.user, now=now):
            messages.info(request, f"{name} is already muted.")
            return redirect(back)
        messages.success(
            request,
            f"{name} is muted: it is left out of the attention list, digests and reconnect requests until it "
            "has broken and works again, or until you unmute it. Find it under \u201cSnoozed and muted\u201d.",
        )
        return redirect(back)
    else:
        if action == "day":
            until = now + dt.timedelta(days=1)
        elif action == "week":
            until = now + dt.timedelta(days=7)
        else:
            day = form.cleaned_data["until"]
            until = dt.datetime.combine(day, dt.time.min, tzinfo=timezone.get_current_timezone())
        quietened = problems.problem_snooze(connection=connection, until=until, user=request.user, now=now)
        words = f"{name} is snoozed until {timezone.localtime(until):%d %b %Y, %H:%M}."
    if not quietened:
        messages.info(request, f"{name} has nothing to snooze: it does not need attention now. Mute it instead.")
    else:
        messages.success(request, f"{words} Find it under “Snoozed and muted”.")
    return redirect(back)


@require_http_methods(["GET", "POST"])
@member_required
def notification_settings(request: HttpRequest) -> HttpResponseBase:
    """How often this user gets the digest (hourly, daily at a local time, off) and their time zone."""
    user = request.user
    assert isinstance(user, AuthUser)  # member_required: signed in
    current = NotificationSettings.objects.filter(user=user).first() or NotificationSettings(user=user)
    form = NotificationSettingsForm(request.POST or None, instance=current)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Digest settings saved.")
        return redirect("notification_settings")
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "connections/notification_settings.html",
        {"form": form, "membership": selectors.membership_for(user=request.user)},
        status=status,
    )
