"""Firm oversight pages: the index, freshness, provider health, audit trail, access review, firm settings.

Scope: freshness follows ``selectors.household_queryset_for`` (a firm admin
sees the firm, an adviser their households); the other pages are the firm
admins' and show their own firm only.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from connections import selectors, wording
from connections.models import Firm, ProviderApp
from connections.views.common import member_required

from .. import access, audit, charts, freshness
from ..exports import day_range, firm_admin_firm
from ..forms import MAX_RANGE_DAYS, AuditFilterForm, DateRangeForm, FirmSettingsForm
from ..models import AuditEntry, BreakerDay, FreshnessSnapshot, ProviderHealthDay

TREND_DAYS = 90
HEALTH_DAYS = (30, 90)
AUDIT_PER_PAGE = 50


def firm_admin_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """A firm admin of some firm; the view gets that firm. Others get a page that says why."""

    @member_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        firm = firm_admin_firm(request.user)
        if firm is None:
            return render(request, "reports/firm_admins_only.html", status=403)
        return view(request, firm, *args, **kwargs)

    return wrapper


def trend_snapshots(*, firm: Firm, adviser_id: int | None, today: dt.date, days: int = TREND_DAYS) -> Any:
    """The firm's rows (``adviser_id`` None) or one adviser's, for the last ``days`` days."""
    return FreshnessSnapshot.objects.filter(
        firm=firm, adviser_id=adviser_id, day__gt=today - dt.timedelta(days=days), day__lte=today
    )


def _trend(snapshots: list[FreshnessSnapshot], today: dt.date) -> tuple[list[dt.date], list[float | None]]:
    by_day = {s.day: s for s in snapshots}
    days = [today - dt.timedelta(days=TREND_DAYS - 1 - i) for i in range(TREND_DAYS)]
    return days, [
        freshness.share(by_day[d].households_fresh, by_day[d].households_with_data) if d in by_day else None
        for d in days
    ]


@require_GET
@member_required
def reports_index(request: HttpRequest) -> HttpResponseBase:
    """What the reader may open and export here: every member the freshness page and the history
    exports of their own scope; firm admins also provider health, the audit trail, access review
    and the firm's settings. Two queries whatever the number of households."""
    membership = selectors.membership_for(user=request.user)
    assert membership is not None  # member_required
    context = {
        "membership": membership,
        "firm": membership.firm,
        "is_firm_admin": membership.is_firm_admin,
        "households": selectors.household_queryset_for(user=request.user).count(),
        "range_form": DateRangeForm(),
        "max_days": MAX_RANGE_DAYS,
    }
    return render(request, "reports/index.html", context)


@require_GET
@member_required
def freshness_page(request: HttpRequest) -> HttpResponseBase:
    user = request.user
    membership = selectors.membership_for(user=user)
    assert membership is not None  # member_required
    firm = membership.firm
    now = timezone.now()
    today = timezone.localdate(now)
    households = selectors.household_queryset_for(user=user)
    cutoff = freshness.cutoff_for(firm=firm, now=now)
    by_adviser: list[tuple[Any, freshness.Figures]] = []
    if membership.is_firm_admin:
        figures_by = freshness.figures_by_adviser(households=households, cutoff=cutoff)
        people = get_user_model().objects.filter(pk__in=list(figures_by), membership__firm=firm)
        by_adviser = sorted(((p, figures_by[p.pk]) for p in people), key=lambda pair: wording.person_name(pair[0]))
    snapshots = list(
        trend_snapshots(firm=firm, adviser_id=None if membership.is_firm_admin else user.pk, today=today).order_by(
            "day"
        )
    )
    days, values = _trend(snapshots, today)
    context = {
        "membership": membership,
        "firm": firm,
        "now": now,
        "cutoff": cutoff,
        "figures": freshness.figures_for(households=households, cutoff=cutoff),
        "providers": freshness.provider_rows(households=households, cutoff=cutoff),
        "stale": freshness.oldest_stale(households=households, cutoff=cutoff),
        "by_adviser": by_adviser,
        "snapshots": snapshots,
        "trend": charts.line_chart(days, values),
        "trend_first": days[0],
        "range_form": DateRangeForm(),
        "max_days": MAX_RANGE_DAYS,
    }
    return render(request, "reports/freshness.html", context)


@require_GET
@firm_admin_required
def provider_health_page(request: HttpRequest, firm: Firm) -> HttpResponseBase:
    """Per provider app: checks, failures by kind and breaker openings, day by day."""
    try:
        span = int(request.GET.get("days", HEALTH_DAYS[0]))
    except ValueError:
        span = HEALTH_DAYS[0]
    span = span if span in HEALTH_DAYS else HEALTH_DAYS[0]
    today = timezone.localdate()
    days = [today - dt.timedelta(days=span - 1 - i) for i in range(span)]
    rows = ProviderHealthDay.objects.filter(firm=firm, day__gte=days[0]).order_by("day")
    by_app: dict[int, dict[dt.date, ProviderHealthDay]] = defaultdict(dict)
    for row in rows:
        by_app[row.provider_app_id][row.day] = row
    apps = {a.pk: a for a in ProviderApp.objects.filter(pk__in=list(by_app)).order_by("provider", "environment")}
    openings: dict[tuple[int, dt.date], int] = {
        (b.provider_app_id, b.day): b.openings
        for b in BreakerDay.objects.filter(provider_app_id__in=list(apps), day__gte=days[0])
    }
    panels = []
    for app_id, app in apps.items():
        per_day = by_app[app_id]
        table = [
            {
                "day": day,
                "row": per_day.get(day),
                "openings": openings.get((app_id, day), 0),
            }
            for day in reversed(days)
            if day in per_day or (app_id, day) in openings
        ]
        failures = [per_day[d].failures if d in per_day else 0 for d in days]
        panels.append(
            {
                "app": app,
                "name": (name := wording.app_name(provider=app.provider, environment=app.environment, name=app.name)),
                "chart_id": f"failures-{app_id}",
                "chart_title": f"Failed checks per day: {name}",
                "table": table,
                "chart": charts.bar_chart(days, failures),
                "checks": sum(r.checks for r in per_day.values()),
                "failures": sum(failures),
                "openings": sum(openings.get((app_id, d), 0) for d in days),
            }
        )
    context = {"firm": firm, "panels": panels, "span": span, "spans": HEALTH_DAYS, "first_day": days[0]}
    return render(request, "reports/provider_health.html", context)


def audit_queryset(*, firm: Firm, form: AuditFilterForm) -> Any:
    start, end = form.range()
    entries = AuditEntry.objects.filter(firm=firm, **form.filters())
    return entries.filter(**{f"at__{op}": moment for op, moment in day_range(start, end).items()})


@require_GET
@firm_admin_required
def audit_page(request: HttpRequest, firm: Firm) -> HttpResponseBase:
    form = AuditFilterForm(request.GET or None, firm=firm)
    refused = form.is_bound and not form.is_valid()
    # Filters that are not valid show nothing rather than the whole trail under an error.
    entries = AuditEntry.objects.none() if refused else audit_queryset(firm=firm, form=form).order_by("-at", "-id")
    page = Paginator(entries, AUDIT_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"firm": firm, "form": form, "page": page, "query": query.urlencode(), "refused": refused}
    return render(request, "reports/audit.html", context, status=400 if refused else 200)


@require_GET
@firm_admin_required
def access_page(request: HttpRequest, firm: Firm) -> HttpResponseBase:
    return render(request, "reports/access.html", {"firm": firm, "rows": access.access_review(firm=firm)})


@require_http_methods(["GET", "POST"])
@firm_admin_required
def firm_settings_page(request: HttpRequest, firm: Firm) -> HttpResponseBase:
    before = {"mfa_required": firm.mfa_required, "freshness_window_hours": firm.freshness_window_hours}
    form = FirmSettingsForm(request.POST or None, instance=firm)
    if request.method == "POST" and form.is_valid():
        form.save()
        after = {name: getattr(firm, name) for name in before}
        changed = {name: {"from": before[name], "to": after[name]} for name in before if before[name] != after[name]}
        if changed:
            words = []
            if "mfa_required" in changed:
                words.append("a second factor is " + ("now required" if firm.mfa_required else "no longer required"))
            if "freshness_window_hours" in changed:
                words.append(f"fresh now means at most {firm.freshness_window_hours} hours old")
            audit.record(
                AuditEntry.Action.FIRM_SETTINGS_CHANGED,
                request=request,
                firm=firm,
                obj=firm,
                object_type="firm",
                message=f"{firm.name}: " + "; ".join(words) + ".",
                details={"changed": changed},
            )
            messages.success(request, "Settings saved.")
        return redirect("reports:settings")
    return render(request, "reports/settings.html", {"firm": firm, "form": form}, status=400 if form.errors else 200)
