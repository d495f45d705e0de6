"""CSV exports stream, cannot run as formulas, and hold exactly what their reader may see; the PDF report."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from connections import models as m
from reports.csvstream import FORMULA_STARTS, csv_lines, neutralise
from reports.models import AuditEntry
from reports.pdf import RefusedFetch, StaticOnlyFetcher
from tests.factories import (
    ClientFactory,
    ConnectionEventFactory,
    ConnectionFactory,
    CredentialFactory,
    FirmFactory,
    HouseholdFactory,
    UserFactory,
)

from .conftest import World, csv_rows
from .pdftext import pdf_text

pytestmark = pytest.mark.django_db


# --- Formula injection ------------------------------------------------------------------------


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_a_cell_that_starts_like_a_formula_is_written_as_text(start: str) -> None:
    assert neutralise(f'{start}HYPERLINK("https://evil.test")') == f'\'{start}HYPERLINK("https://evil.test")'


def test_ordinary_cells_and_numbers_are_left_alone() -> None:
    assert [neutralise(v) for v in ("Nguyen", "a=b", 3, None, True)] == ["Nguyen", "a=b", 3, "", "yes"]
    assert "'=1+1" in "".join(csv_lines(["h"], [["=1+1"]]))


def test_a_household_named_like_a_formula_is_exported_as_text(client: Any, world: World) -> None:
    m.Household.objects.filter(pk=world.household.pk).update(name='=HYPERLINK("https://evil.test","x")')
    m.Client.objects.filter(pk=world.client.pk).update(name="@SUM(A1:A9)")
    client.force_login(world.adviser)

    (row,) = csv_rows(client.get(reverse("reports:connections_csv")))

    assert row["Household"].startswith("'=HYPERLINK")
    assert row["Client"] == "'@SUM(A1:A9)"


# --- What the connections export holds ----------------------------------------------------------


def test_connections_export_streams_status_reason_deadlines_and_data_as_of(client: Any, world: World) -> None:
    as_of = timezone.now() - dt.timedelta(hours=30)
    m.Connection.objects.filter(pk=world.connection.pk).update(
        status="needs_reconnect", reason="revoked", last_success_at=as_of
    )
    access = CredentialFactory(connection=world.connection, kind="access")
    client.force_login(world.adviser)

    response = client.get(reverse("reports:connections_csv"))

    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert response["Cache-Control"] == "no-store"
    (row,) = csv_rows(response)
    assert row["Source"] == "Coinbase via Turnqey"
    assert row["Status"] == "Needs reconnect"
    assert row["Reason"] == "revoked"
    assert row["In words"] == "Coinbase via Turnqey: access was revoked at Coinbase. Ask the client to reconnect."
    assert row["Data as of"] == timezone.localtime(as_of).isoformat(timespec="seconds")
    assert row["Fresh"] == "no"
    assert row["Access token expires"] == timezone.localtime(access.expires_at).isoformat(timespec="seconds")
    assert "secret-token" not in str(row)


def test_an_export_writes_its_times_in_the_readers_own_zone(client: Any, world: World, settings: Any) -> None:
    settings.TIME_ZONE = "UTC"
    as_of = dt.datetime(2025, 7, 1, 15, 30, tzinfo=dt.UTC)
    m.Connection.objects.filter(pk=world.connection.pk).update(last_success_at=as_of)
    m.NotificationSettings.objects.create(user=world.adviser, time_zone="America/New_York")
    client.force_login(world.adviser)

    (row,) = csv_rows(client.get(reverse("reports:connections_csv")))  # streamed after the view returned

    assert row["Data as of"] == "2025-07-01T11:30:00-04:00"


def test_an_export_is_itself_one_audit_row(client: Any, world: World) -> None:
    client.force_login(world.adviser)
    b"".join(client.get(reverse("reports:connections_csv"), REMOTE_ADDR="203.0.113.9").streaming_content)

    entry = AuditEntry.objects.get(action=AuditEntry.Action.EXPORTED)
    assert (entry.actor, entry.firm, entry.ip_address) == (world.adviser, world.firm, "203.0.113.9")
    assert entry.details["export"] == "connections"


def test_event_history_of_a_household_in_a_date_range(client: Any, world: World) -> None:
    now = timezone.now()
    inside = ConnectionEventFactory(
        connection=world.connection, message="inside", created_at=now - dt.timedelta(days=3)
    )
    ConnectionEventFactory(connection=world.connection, message="too old", created_at=now - dt.timedelta(days=40))
    ConnectionEventFactory(connection=world.other_connection, message="other household", created_at=now)
    client.force_login(world.firm_admin)
    start = timezone.localdate(now - dt.timedelta(days=10))

    rows = csv_rows(
        client.get(reverse("reports:events_csv"), {"household": world.household.pk, "start": start.isoformat()})
    )

    assert [(r["Event ID"], r["What happened"], r["By"]) for r in rows] == [
        (str(inside.pk), "inside", "scheduled check")
    ]


def test_event_history_of_another_firms_household_is_a_404(client: Any, world: World) -> None:
    client.force_login(world.adviser)
    response = client.get(reverse("reports:events_csv"), {"household": world.foreign_household.pk})
    assert response.status_code == 404
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.EXPORTED).exists()


def test_client_link_history_says_what_each_link_was_for(client: Any, world: World) -> None:
    now = timezone.now()
    m.ClientLink.objects.create(
        token_hash="a" * 64,
        household=world.household,
        client=world.client,
        connection=world.connection,
        provider_app=world.turnqey,
        platform="coinbase",
        sent_to="linh@example.test",
        created_by=world.adviser,
        expires_at=now - dt.timedelta(minutes=1),
    )
    client.force_login(world.adviser)

    (row,) = csv_rows(client.get(reverse("reports:client_links_csv")))

    assert (row["Purpose"], row["Status"], row["For"], row["Sent by"]) == (
        "Reconnect",
        "Expired",
        "Coinbase via Turnqey",
        "Alice",
    )


# --- Reconnect requests -------------------------------------------------------------------------


def _asked(world: World, *platforms: str) -> m.ReconnectRequest:
    from connections import services

    for platform in platforms:
        ConnectionFactory(
            client=world.client,
            provider_app=world.turnqey,
            platform=platform,
            status="needs_reconnect",
            reason="revoked",
        )
    (result,) = services.reconnect_requests_create(households=[world.household], user=world.adviser)
    assert result.request is not None
    return result.request


def test_reconnect_request_history_has_one_row_per_request_with_delivery_reminders_items_and_stop(
    client: Any, world: World
) -> None:
    request = _asked(world, "kraken", "gemini")
    first = request.items.order_by("position").first()
    assert first is not None
    m.ReconnectRequestItem.objects.filter(pk=first.pk).update(status="done")
    now = timezone.now()
    m.ReconnectRequest.objects.filter(pk=request.pk).update(
        status="paused",
        pause_reason="stop",
        paused_at=now,
        opened_at=now,
        delivery="bounced",
        delivery_at=now,
        reminders_sent=1,
        last_reminder_at=now,
    )
    m.Client.objects.filter(pk=world.client.pk).update(name="=cmd|'/c calc'!A1")
    client.force_login(world.adviser)

    response = client.get(reverse("reports:reconnect_requests_csv"))

    assert response["Cache-Control"] == "no-store"
    (row,) = csv_rows(response)
    assert row["Request ID"] == str(request.pk)
    assert (row["Household"], row["Client"], row["Sent to"], row["Sent by"]) == (
        "Nguyen Household",
        "'=cmd|'/c calc'!A1",
        "linh@example.test",
        "Alice",
    )
    assert (row["Status"], row["Delivery"], row["Reminders sent"]) == ("Stopped by the client", "Bounced", "1")
    assert (row["Items"], row["Items done"], row["Client stopped it"]) == ("2", "1", "Please stop")
    assert row["Opened"] == timezone.localtime(now).isoformat(timespec="seconds")
    assert row["Closed"] == ""
    entry = AuditEntry.objects.get(action=AuditEntry.Action.EXPORTED)
    assert (entry.actor, entry.details["export"]) == (world.adviser, "reconnect-requests")
    assert "token" not in " ".join(row).lower()


def test_reconnect_request_history_in_a_date_range(client: Any, world: World) -> None:
    request = _asked(world, "kraken")
    m.ReconnectRequest.objects.filter(pk=request.pk).update(created_at=timezone.now() - dt.timedelta(days=40))
    client.force_login(world.firm_admin)
    start = timezone.localdate() - dt.timedelta(days=10)

    assert csv_rows(client.get(reverse("reports:reconnect_requests_csv"), {"start": start.isoformat()})) == []
    assert len(csv_rows(client.get(reverse("reports:reconnect_requests_csv")))) == 1


def test_the_freshness_page_links_every_history_export(client: Any, world: World) -> None:
    client.force_login(world.adviser)
    page = client.get(reverse("reports:freshness")).content.decode()
    for name in ("events_csv", "client_links_csv", "reconnect_requests_csv"):
        assert reverse(f"reports:{name}") in page


# --- Date ranges --------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["reports:events_csv", "reports:client_links_csv", "reports:reconnect_requests_csv"])
def test_a_history_export_over_more_than_a_year_is_refused_and_says_why(client: Any, world: World, route: str) -> None:
    client.force_login(world.firm_admin)

    too_long = client.get(reverse(route), {"start": "2024-01-01", "end": "2025-01-01"})  # 367 days
    a_year = client.get(reverse(route), {"start": "2024-01-01", "end": "2024-12-31"})  # 366 days

    assert too_long.status_code == 400
    assert "Choose at most 366 days" in too_long.content.decode()
    assert "367 days" in too_long.content.decode()
    assert a_year.status_code == 200
    assert AuditEntry.objects.filter(action=AuditEntry.Action.EXPORTED).count() == 1  # only the one exported


def test_a_start_more_than_a_year_ago_without_an_end_counts_up_to_today(client: Any, world: World) -> None:
    client.force_login(world.firm_admin)
    start = timezone.localdate() - dt.timedelta(days=400)
    response = client.get(reverse("reports:events_csv"), {"start": start.isoformat()})
    assert response.status_code == 400
    assert "401 days" in response.content.decode()


def test_the_audit_trail_refuses_a_range_of_more_than_a_year_on_its_page_and_its_export(
    client: Any, world: World
) -> None:
    from reports import audit

    audit.record(AuditEntry.Action.EXPORTED, actor=world.adviser, message="alice exported")
    client.force_login(world.firm_admin)
    dates = {"start": "2023-01-01", "end": "2025-06-30"}

    page = client.get(reverse("reports:audit"), dates)
    export = client.get(reverse("reports:audit_csv"), dates)

    assert page.status_code == 400
    assert "Choose at most 366 days" in page.content.decode()
    assert "alice exported" not in page.content.decode()
    assert export.status_code == 400
    assert "Choose at most 366 days" in export.content.decode()


# --- Scope: a property over random firms, roles and assignments -----------------------------------

USERS, HOUSEHOLDS = 4, 4
EXPORTS = {
    "connections": ("reports:connections_csv", "Household ID"),
    "events": ("reports:events_csv", "Household ID"),
    "client links": ("reports:client_links_csv", "Household ID"),
    "reconnect requests": ("reports:reconnect_requests_csv", "Household ID"),
}


@dataclass
class Stage:
    firms: list[m.Firm]
    users: list[Any]
    households: list[m.Household]


@pytest.fixture
def stage(db: None) -> Stage:
    firms = [FirmFactory(), FirmFactory()]
    users = [UserFactory(username=f"exporter{i}") for i in range(USERS)]
    households = [HouseholdFactory(firm=firms[i % 2], name=f"Scoped {i}") for i in range(HOUSEHOLDS)]
    app = None
    for household in households:
        connection = ConnectionFactory(client=ClientFactory(household=household))
        app = connection.provider_app
        ConnectionEventFactory(connection=connection)
        link = m.ClientLink.objects.create(
            token_hash=f"{household.pk:064d}",
            household=household,
            client=connection.client,
            provider_app=app,
            platform="coinbase",
            sent_to="c@example.test",
            expires_at=timezone.now() + dt.timedelta(days=1),
        )
        request = m.ReconnectRequest.objects.create(
            household=household, client=connection.client, sent_to="c@example.test", expires_at=link.expires_at
        )
        m.ReconnectRequestItem.objects.create(request=request, connection=connection, client_link=link)
    return Stage(firms, users, households)


membership = st.tuples(st.sampled_from([None, 0, 1]), st.sampled_from(list(m.Membership.Role)))
drawing = st.fixed_dictionaries(
    {
        "memberships": st.lists(membership, min_size=USERS, max_size=USERS),
        "advisers": st.lists(
            st.sets(st.integers(min_value=0, max_value=USERS - 1)), min_size=HOUSEHOLDS, max_size=HOUSEHOLDS
        ),
    }
)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=drawing, who=st.integers(min_value=0, max_value=USERS - 1), export=st.sampled_from(sorted(EXPORTS)))
def test_exports_hold_exactly_the_households_their_reader_may_see(
    stage: Stage, drawn: dict[str, Any], who: int, export: str
) -> None:
    m.Membership.objects.filter(user__in=stage.users).delete()
    m.Membership.objects.bulk_create(
        m.Membership(user=user, firm=stage.firms[firm], role=role)
        for user, (firm, role) in zip(stage.users, drawn["memberships"], strict=True)
        if firm is not None
    )
    for household, advisers in zip(stage.households, drawn["advisers"], strict=True):
        household.advisers.set([stage.users[i] for i in advisers])
    browser = Client()
    browser.force_login(stage.users[who])
    route, column = EXPORTS[export]

    response = browser.get(reverse(route))

    firm, role = drawn["memberships"][who]
    if firm is None:
        assert response.status_code == 403
        return
    # Computed from the drawing, never from the database: the firm's households
    # (household i is in firm i % 2), all of them for a firm admin, else the assigned ones.
    expected = {
        stage.households[i].pk
        for i in range(HOUSEHOLDS)
        if i % 2 == firm and (role == m.Membership.Role.FIRM_ADMIN or who in drawn["advisers"][i])
    }
    assert {int(r[column]) for r in csv_rows(response)} == expected


# --- The household report (PDF) -----------------------------------------------------------------


def test_household_report_pdf_names_the_firm_and_lists_the_households_connections(client: Any, world: World) -> None:
    ConnectionFactory(client=world.client, provider_app=world.coinify, platform="coinify", status="degraded")
    ConnectionEventFactory(connection=world.connection, message="Coinbase via Turnqey: credentials renewed.")
    client.force_login(world.adviser)

    response = client.get(reverse("reports:household_pdf", args=[world.household.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    text = " ".join(pdf_text(response.content).split())  # cells wrap their text over lines
    assert "Harbour Wealth" in text
    assert "Nguyen Household" in text
    assert "Coinbase via Turnqey" in text
    assert "Coinify" in text
    assert "Linh Nguyen" in text
    assert "Degraded" in text
    assert "Active" in text
    assert "credentials renewed" in text
    assert "generated" in text
    assert f"{timezone.localdate():%Y}" in text
    assert "Okoro" not in text


def test_household_report_of_another_firm_is_a_404(client: Any, world: World) -> None:
    client.force_login(world.adviser)
    assert client.get(reverse("reports:household_pdf", args=[world.foreign_household.pk])).status_code == 404
    assert client.get(reverse("reports:household_pdf", args=[world.other_household.pk])).status_code == 404


def test_the_pdf_renderer_serves_static_files_and_refuses_everything_else() -> None:
    fetcher = StaticOnlyFetcher()
    css = fetcher.fetch("https://report.invalid/static/reports/report.css")
    assert b"@page" in css.read()
    for url in (
        "https://example.com/static/reports/report.css",
        "http://127.0.0.1:8000/static/reports/report.css",
        "file:///etc/passwd",
        "https://report.invalid/static/../../portal/settings.py",
        "https://report.invalid/admin/",
    ):
        with pytest.raises(RefusedFetch):
            fetcher.fetch(url)
