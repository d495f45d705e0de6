"""Reads for the adviser web UI: keyword-only, typed, ``<noun>_<verb>`` names.

Scoping contract
----------------
:func:`household_queryset_for` is the ONE place that decides what a user may
see: an adviser sees the households assigned to them, a firm admin every
household of their firm, a user without a membership nothing. Every other
selector (connections, clients, links, events) derives from it, and every view
fetches objects through these querysets, so anything outside them is a 404.
Its firm-wide half, :func:`firm_household_queryset`, is what a firm admin
sees and what the firm's API keys see (the API acts for a firm, not a person).

Query counts: list selectors annotate or prefetch, so the number of queries a
page makes does not grow with the number of rows on it.
"""

from __future__ import annotations

from .dashboard import (
    ATTENTION_CANDIDATES,
    HOUSEHOLD_TABLE_ORDER,
    connection_status_counts,
    connections_by_status,
    deadline_is_near,
    household_table,
    household_table_first_page,
    household_table_page,
    households_with_rollups,
    needs_attention_list,
    needs_attention_queryset,
)
from .pages import (
    Deadline,
    HealthDay,
    HouseholdPage,
    client_link_effective_status,
    connection_cards_queryset,
    connection_deadlines,
    connection_events,
    connection_health_days,
    credentials_without_values,
    household_page,
    provider_app_options,
    provider_credential_form,
    provider_form_action_origins,
    provider_form_action_origins_forget,
)
from .scoping import (
    LIVE_STATUSES,
    NO_SECRETS,
    SEVERITY_STATUS,
    STATUS_SEVERITY,
    User,
    client_link_queryset_for,
    client_queryset_for,
    connection_queryset_for,
    firm_connection_queryset,
    firm_household_queryset,
    household_queryset_for,
    household_read,
    membership_for,
    membership_queryset,
)

__all__ = [
    "ATTENTION_CANDIDATES",
    "HOUSEHOLD_TABLE_ORDER",
    "LIVE_STATUSES",
    "NO_SECRETS",
    "SEVERITY_STATUS",
    "STATUS_SEVERITY",
    "Deadline",
    "HealthDay",
    "HouseholdPage",
    "User",
    "client_link_effective_status",
    "client_link_queryset_for",
    "client_queryset_for",
    "connection_cards_queryset",
    "connection_deadlines",
    "connection_events",
    "connection_health_days",
    "connection_queryset_for",
    "connection_status_counts",
    "connections_by_status",
    "credentials_without_values",
    "deadline_is_near",
    "firm_connection_queryset",
    "firm_household_queryset",
    "household_page",
    "household_queryset_for",
    "household_read",
    "household_table",
    "household_table_first_page",
    "household_table_page",
    "households_with_rollups",
    "membership_for",
    "membership_queryset",
    "needs_attention_list",
    "needs_attention_queryset",
    "provider_app_options",
    "provider_credential_form",
    "provider_form_action_origins",
    "provider_form_action_origins_forget",
]
