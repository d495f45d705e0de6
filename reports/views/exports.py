"""Exports: CSV streamed row by row, and the household report as PDF. Each is itself audited.

The audit row is written before the first byte is sent (and before the PDF
is rendered), so an export that is interrupted is still on the record.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone
from django.views.decorators.http import require_GET

from connections import selectors
from connections.models import Firm
from connections.views.common import member_required, scoped_household

from .. import audit, exports, pdf, sent_exports
from ..csvstream import csv_response
from ..forms import AuditFilterForm, DateRangeForm
from ..models import AuditEntry
from .pages import audit_queryset, firm_admin_required, trend_snapshots


def _stream(request: HttpRequest, export: exports.Export, *, what: str, **audited: Any) -> HttpResponseBase:
    filters = {k: v for k, v in request.GET.items() if k != "page"}
    audit.record(
        AuditEntry.Action.EXPORTED,
        request=request,
        message=f"Exported {what} (CSV).",
        object_type="export",
        details={"export": export.name, "format": "csv", "filters": filters},
        **audited,
    )
    return csv_response(filename=f"{export.name}.csv", header=export.header, rows=export.rows)


def _refused(form: DateRangeForm) -> HttpResponse:
    """A 400 that says what is wrong with the dates or filters, in the form's own words; nothing is exported."""
    return HttpResponse(
        f"Nothing was exported. {form.error_words()}", status=400, content_type="text/plain; charset=utf-8"
    )


@require_GET
@member_required
def connections_csv(request: HttpRequest) -> HttpResponseBase:
    return _stream(request, exports.connections_export(user=request.user), what="connections")


@require_GET
@member_required
def events_csv(request: HttpRequest) -> HttpResponseBase:
    """The event history of one household (``?household=``) or of every household the user sees."""
    household = None
    if request.GET.get("household"):
        try:
            pk = int(request.GET["household"])
        except ValueError:
            return HttpResponse("Unknown household.", status=400, content_type="text/plain")
        household = scoped_household(request, pk)  # 404 outside the user's scope
    form = DateRangeForm(request.GET)
    if not form.is_valid():
        return _refused(form)
    start, end = form.range()
    export = exports.events_export(user=request.user, household=household, start=start, end=end)
    what = f"the event history of {household.name}" if household is not None else "the event history"
    return _stream(request, export, what=what, household=household)


@require_GET
@member_required
def client_links_csv(request: HttpRequest) -> HttpResponseBase:
    form = DateRangeForm(request.GET)
    if not form.is_valid():
        return _refused(form)
    start, end = form.range()
    return _stream(
        request, sent_exports.client_links_export(user=request.user, start=start, end=end), what="client links"
    )


@require_GET
@member_required
def reconnect_requests_csv(request: HttpRequest) -> HttpResponseBase:
    form = DateRangeForm(request.GET)
    if not form.is_valid():
        return _refused(form)
    start, end = form.range()
    export = sent_exports.reconnect_requests_export(user=request.user, start=start, end=end)
    return _stream(request, export, what="reconnect requests")


@require_GET
@member_required
def freshness_csv(request: HttpRequest) -> HttpResponseBase:
    membership = selectors.membership_for(user=request.user)
    assert membership is not None
    adviser_id = None if membership.is_firm_admin else request.user.pk
    snapshots = trend_snapshots(firm=membership.firm, adviser_id=adviser_id, today=timezone.localdate(), days=366)
    return _stream(request, exports.freshness_export(snapshots=snapshots), what="daily freshness figures")


@require_GET
@firm_admin_required
def audit_csv(request: HttpRequest, firm: Firm) -> HttpResponseBase:
    form = AuditFilterForm(request.GET or None, firm=firm)
    if form.is_bound and not form.is_valid():
        return _refused(form)
    # The entries are chosen before this export's own row is written, so it is not in its own file.
    entries = audit_queryset(firm=firm, form=form).filter(pk__lte=_last_entry_id())
    return _stream(request, exports.audit_export(entries=entries), what="the audit trail", firm=firm)


def _last_entry_id() -> int:
    last = AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first()
    return last or 0


@require_GET
@firm_admin_required
def access_csv(request: HttpRequest, firm: Firm) -> HttpResponseBase:
    return _stream(request, exports.access_export(firm=firm), what="the access review", firm=firm)


@require_GET
@member_required
def household_pdf(request: HttpRequest, pk: int) -> HttpResponseBase:
    household = scoped_household(request, pk)  # 404 outside the user's scope
    audit.record(
        AuditEntry.Action.EXPORTED,
        request=request,
        household=household,
        obj=household,
        object_type="household",
        message=f"Exported the status report of {household.name} (PDF).",
        details={"export": "household-report", "format": "pdf"},
    )
    report = pdf.household_report(user=request.user, household=household)
    response = HttpResponse(report.pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{report.filename}"'
    response["Cache-Control"] = "no-store"
    return response
