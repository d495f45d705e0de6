"""Views of firm oversight: thin, they read through :mod:`reports.freshness`, :mod:`reports.exports`
and the connections selectors, and never widen a user's scope."""

from .exports import (
    access_csv,
    audit_csv,
    client_links_csv,
    connections_csv,
    events_csv,
    freshness_csv,
    household_pdf,
    reconnect_requests_csv,
)
from .pages import access_page, audit_page, firm_settings_page, freshness_page, provider_health_page, reports_index

__all__ = [
    "access_csv",
    "access_page",
    "audit_csv",
    "audit_page",
    "client_links_csv",
    "connections_csv",
    "events_csv",
    "firm_settings_page",
    "freshness_csv",
    "freshness_page",
    "household_pdf",
    "provider_health_page",
    "reconnect_requests_csv",
    "reports_index",
]
