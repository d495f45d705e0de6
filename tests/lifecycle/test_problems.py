"""Notification hygiene: one problem per connection and cause, announced once, recovered once, quiet when asked.

The connections go through the real lifecycle (checks against the scripted
fake provider) on a clock the test moves; the jobs run as the beat would run
them (``send_reminders`` every 15 minutes, the digest every hour), and what
the adviser is told is read from the digests they receive.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from connections import jobs, problems
from connections.lifecycle import connection_check
from connections.models import ConnectionProblem, Membership, NotificationSettings
from connections.providers.errors import FailureReason, ProviderError
from tests.e2e.support import Clock
from tests.factories import ClientFactory, FirmFactory, HouseholdFactory, MembershipFactory, UserFactory

from .conftest import FakeWorld, make_connection

pytestmark = pytest.mark.django_db
Cause = ConnectionProblem.Cause


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    # On the hour, so the hourly digest and the 15-minute job line up as the beat runs them.
    controlled = Clock(timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1))
    monkeypatch.setattr(timezone, "now", controlled.now)
    return controlled


@pytest.fixture
def office(app: Any, clock: Clock, world: FakeWorld) -> dict[str, Any]:
    # Each renewal rotates the refresh token, so its end of life rolls forward: no deadline to warn about
    # unless a test makes one.
    world.refresh_rolls = True
    firm = FirmFactory(name="Harbour Wealth")
    adviser = MembershipFactory(firm=firm, user=UserFactory(username="ana", first_name="Ana", last_name="Ng")).user
    boss = MembershipFactory(firm=firm, user=UserFactory(username="boss"), role=Membership.Role.FIRM_ADMIN).user
    household = HouseholdFactory(firm=firm, name="Ashford", advisers=[adviser])
    connection = make_connection(app, client=ClientFactory(household=household), platform="gemini")
    # Nothing older than the test is news.
    Membership.objects.update(digest_sent_up_to=timezone.now())
    return {"firm": firm, "adviser": adviser, "boss": boss, "household": household, "connection": connection}


def _digests(address: str) -> list[str]:
    return [message.body for message in mail.outbox if message.to == [address]]


def _run_quarter_hours(clock: Clock, quarters: int, check: Any = None) -> None:
    """As the beat: per quarter hour a check (when given), then send_reminders; the digest on the hour."""
    for _ in range(quarters):
        clock.advance(timedelta(minutes=15))
        if check is not None:
            check()
        jobs.reminders_run()
        if clock.now().minute == 0:
            jobs.digests_send()


def test_a_connection_flapping_at_every_check_for_a_day_is_announced_once_and_recovers_once(
    office: dict[str, Any], world: FakeWorld, clock: Clock, settings: Any
) -> None:
    settings.LIFECYCLE_DEGRADED_AFTER = 1  # every failed check degrades it, every good one recovers it
    connection = office["connection"]
    flaps = {"n": 0}

    def flapping_check() -> None:
        flaps["n"] += 1
        if flaps["n"] % 2:
            world.probe_script.append(ProviderError.transient("Fake: 503."))
        connection_check(connection_id=connection.pk, force=True)

    _run_quarter_hours(clock, 24 * 4, flapping_check)
    # The provider settles: two good checks, then a few quiet hours.
    _run_quarter_hours(clock, 4 * 4, lambda: connection_check(connection_id=connection.pk, force=True))

    bodies = _digests("ana@example.test")
    assert sum(body.count("PROVIDER FAILING FOR OVER AN HOUR") for body in bodies) == 1
    assert sum(body.count("RECOVERED") for body in bodies) == 1
    assert ConnectionProblem.objects.filter(connection=connection).count() == 1
    problem = ConnectionProblem.objects.get(connection=connection)
    assert problem.resolution == ConnectionProblem.Resolution.RECOVERED
    assert problem.occurrences > 40  # every relapse counted on the one problem


def test_a_revoked_connection_reconnected_and_revoked_again_within_the_hold_stays_one_problem(
    office: dict[str, Any], world: FakeWorld, clock: Clock
) -> None:
    connection = office["connection"]
    world.probe_script.append(ProviderError.reauth(FailureReason.REVOKED, "Fake: revoked."))
    connection_check(connection_id=connection.pk, force=True)
    _run_quarter_hours(clock, 4)
    assert sum("NEED RECONNECTING" in b for b in _digests("ana@example.test")) == 1

    connection_check(connection_id=connection.pk, force=True)  # back (a forced check finds it working)
    clock.advance(timedelta(minutes=10))
    jobs.reminders_run()
    world.probe_script.append(ProviderError.reauth(FailureReason.REVOKED, "Fake: revoked again."))
    connection_check(connection_id=connection.pk, force=True)  # and broken again, within the hour
    _run_quarter_hours(clock, 8)

    bodies = _digests("ana@example.test")
    assert sum("NEED RECONNECTING" in b for b in bodies) == 1
    assert not any("RECOVERED" in b for b in bodies)
    assert ConnectionProblem.objects.filter(connection=connection, closed_at__isnull=True).count() == 1


def test_a_problem_solved_before_anyone_was_told_is_never_mentioned(
    office: dict[str, Any], world: FakeWorld, clock: Clock
) -> None:
    office["connection"].__class__.objects.filter(pk=office["connection"].pk).update(
        status="degraded", reason="transient", degraded_since=clock.now(), consecutive_failures=3
    )
    _run_quarter_hours(clock, 2)  # degraded for half an hour: not yet actionable
    connection_check(connection_id=office["connection"].pk, force=True)
    _run_quarter_hours(clock, 8, lambda: connection_check(connection_id=office["connection"].pk, force=True))
    assert _digests("ana@example.test") == []
    assert ConnectionProblem.objects.get().resolution == ConnectionProblem.Resolution.CLEARED


def test_a_snoozed_problem_leaves_the_list_and_digests_and_wakes_when_the_snooze_ends(
    office: dict[str, Any], world: FakeWorld, clock: Clock, client: Any
) -> None:
    connection = office["connection"]
    world.probe_script.append(ProviderError.reauth(FailureReason.REVOKED, "Fake: revoked."))
    connection_check(connection_id=connection.pk, force=True)
    client.force_login(office["adviser"])
    snoozed = client.post(reverse("connection_quiet", args=[connection.pk]), {"action": "day"})
    assert snoozed.status_code == 302

    row = f'href="{reverse("connection_detail", args=[connection.pk])}"'
    assert row not in client.get(reverse("attention_list")).content.decode()
    assert row in client.get(reverse("attention_list"), {"show": "quiet"}).content.decode()
    _run_quarter_hours(clock, 4 * 23)
    assert _digests("ana@example.test") == []

    _run_quarter_hours(clock, 4 * 2)  # the day is over
    assert row in client.get(reverse("attention_list")).content.decode()
    bodies = _digests("ana@example.test")
    assert len(bodies) == 1
    assert "BACK FROM SNOOZE" in bodies[0]


def test_a_muted_connection_stays_quiet_until_it_works_again_then_a_new_break_is_told(
    office: dict[str, Any], world: FakeWorld, clock: Clock
) -> None:
    connection = office["connection"]
    world.probe_script.append(ProviderError.reauth(FailureReason.REVOKED, "Fake: account closed."))
    connection_check(connection_id=connection.pk, force=True)
    assert problems.connection_mute(connection=connection, user=office["adviser"]) is True
    _run_quarter_hours(clock, 4 * 24 * 9)  # nine days: no digest, no escalation
    assert _digests("ana@example.test") == []
    assert _digests("boss@example.test") == []

    connection_check(connection_id=connection.pk, force=True)  # it works again
    _run_quarter_hours(clock, 8, lambda: connection_check(connection_id=connection.pk, force=True))
    assert _digests("ana@example.test") == []  # a muted problem's recovery is not news either
    world.probe_script.append(ProviderError.reauth(FailureReason.REVOKED, "Fake: revoked."))
    connection_check(connection_id=connection.pk, force=True)
    _run_quarter_hours(clock, 4)
    bodies = _digests("ana@example.test")
    assert len(bodies) == 1
    assert "NEED RECONNECTING" in bodies[0]


def test_a_problem_open_past_the_firms_age_is_escalated_once_to_the_firm_admins_naming_the_adviser(
    office: dict[str, Any], world: FakeWorld, clock: Clock
) -> None:
    connection = office["connection"]
    world.probe_script.append(ProviderError.reauth(FailureReason.REVOKED, "Fake: revoked."))
    connection_check(connection_id=connection.pk, force=True)
    _run_quarter_hours(clock, 4 * 24 * 10)

    escalations = [b for b in _digests("boss@example.test") if "OPEN TOO LONG" in b]
    assert len(escalations) == 1
    assert "Ana Ng" in escalations[0]
    assert "has needed attention for 7 days" in escalations[0]
    assert not any("OPEN TOO LONG" in b for b in _digests("ana@example.test"))  # admins only


def test_digests_follow_each_users_frequency_local_time_and_say_nothing_without_news(
    office: dict[str, Any], world: FakeWorld, clock: Clock
) -> None:
    one_am = clock.now().replace(hour=1)
    clock.move_to(one_am if one_am >= clock.now() else one_am + timedelta(days=1))  # 20:00 in New York
    NotificationSettings.objects.create(
        user=office["adviser"], digest="daily", daily_at=timezone.datetime(2000, 1, 1, 7, 0).time(),
        time_zone="America/New_York",
    )  # fmt: skip
    NotificationSettings.objects.create(user=office["boss"], digest="off")
    _run_quarter_hours(clock, 4 * 30)  # nothing happens for 30 hours: nobody hears anything
    assert mail.outbox == []

    world.probe_script.append(ProviderError.reauth(FailureReason.REVOKED, "Fake: revoked."))
    connection_check(connection_id=office["connection"].pk, force=True)
    sent_at = []
    for _ in range(4 * 26):
        _run_quarter_hours(clock, 1)
        if len(mail.outbox) > len(sent_at):
            sent_at.append(clock.now())
    assert len(mail.outbox) == 1  # once a day, and the firm admin turned theirs off
    assert timezone.localtime(sent_at[0], timezone.get_fixed_timezone(-5 * 60)).hour == 7
    assert mail.outbox[0].to == ["ana@example.test"]


def test_the_hourly_digest_lists_what_is_still_broken_and_lapsing_beside_the_news(
    office: dict[str, Any], world: FakeWorld, clock: Clock, app: Any
) -> None:
    world.probe_script.append(ProviderError.reauth(FailureReason.REVOKED, "Fake: revoked."))
    connection_check(connection_id=office["connection"].pk, force=True)
    _run_quarter_hours(clock, 4)
    assert len(_digests("ana@example.test")) == 1
    _run_quarter_hours(clock, 4 * 3)
    assert len(_digests("ana@example.test")) == 1  # no news, no digest, though it is still broken

    other = make_connection(app, client=ClientFactory(household=office["household"]), platform="kraken")
    world.probe_script.append(ProviderError.reauth(FailureReason.EXPIRED, "Fake: expired."))
    connection_check(connection_id=other.pk, force=True)
    _run_quarter_hours(clock, 4)
    latest = _digests("ana@example.test")[-1]
    assert "NEED RECONNECTING" in latest
    assert "Kraken" in latest.split("STILL TO DO")[0]
    assert "STILL TO DO (told before)" in latest
    assert "Gemini" in latest.split("STILL TO DO")[1]


def test_a_healthy_connection_muted_from_the_household_page_stays_quiet_through_a_break_then_the_next_is_told(
    office: dict[str, Any], world: FakeWorld, clock: Clock, client: Any
) -> None:
    connection = office["connection"]
    client.force_login(office["adviser"])
    household = reverse("household_detail", args=[office["household"].pk])
    row = f'href="{reverse("connection_detail", args=[connection.pk])}"'
    muted = client.post(reverse("connection_quiet", args=[connection.pk]), {"action": "mute", "next": household})
    assert muted.status_code == 302
    assert muted["Location"] == household
    connection.refresh_from_db()
    assert connection.muted_at == clock.now()
    page = client.get(household).content.decode()
    assert "Unmute" in page
    assert "left out of the attention list, digests and reconnect requests" in page
    assert row in client.get(reverse("attention_list"), {"show": "quiet"}).content.decode()  # healthy, yet listed

    world.probe_script.append(ProviderError.reauth(FailureReason.REVOKED, "Fake: account closed."))
    connection_check(connection_id=connection.pk, force=True)
    _run_quarter_hours(clock, 4 * 24 * 9)  # nine days broken: no digest, no escalation, not in the list
    assert _digests("ana@example.test") == []
    assert _digests("boss@example.test") == []
    assert row not in client.get(reverse("attention_list")).content.decode()
    assert row in client.get(reverse("attention_list"), {"show": "quiet"}).content.decode()

    connection_check(connection_id=connection.pk, force=True)  # it works again, and holds
    _run_quarter_hours(clock, 8, lambda: connection_check(connection_id=connection.pk, force=True))
    assert _digests("ana@example.test") == []  # its recovery is not news either
    connection.refresh_from_db()
    assert connection.muted_at is None  # the mute has done its job
    assert ConnectionProblem.objects.get(connection=connection).resolution == "recovered_muted"

    world.probe_script.append(ProviderError.reauth(FailureReason.REVOKED, "Fake: revoked."))
    connection_check(connection_id=connection.pk, force=True)
    _run_quarter_hours(clock, 4)
    bodies = _digests("ana@example.test")
    assert len(bodies) == 1
    assert "NEED RECONNECTING" in bodies[0]


def test_unmuting_from_the_household_page_brings_a_broken_connection_back_at_once(
    office: dict[str, Any], world: FakeWorld, clock: Clock, client: Any
) -> None:
    connection = office["connection"]
    world.probe_script.append(ProviderError.reauth(FailureReason.REVOKED, "Fake: revoked."))
    connection_check(connection_id=connection.pk, force=True)
    assert problems.connection_mute(connection=connection, user=office["adviser"]) is True
    assert problems.connection_mute(connection=connection, user=office["adviser"]) is False  # the first time stands
    client.force_login(office["adviser"])
    row = f'href="{reverse("connection_detail", args=[connection.pk])}"'
    assert row not in client.get(reverse("attention_list")).content.decode()

    quiet = reverse("connection_quiet", args=[connection.pk])
    unmuted = client.post(quiet, {"action": "unmute"}, follow=True).content.decode()
    assert "is no longer muted" in unmuted
    assert row in client.get(reverse("attention_list")).content.decode()
    again = client.post(quiet, {"action": "unmute"}, follow=True).content.decode()
    assert "was not muted" in again
    # Another firm's adviser cannot reach it.
    stranger = MembershipFactory(firm=FirmFactory(), user=UserFactory(username="eve")).user
    client.force_login(stranger)
    assert client.post(quiet, {"action": "mute"}).status_code == 404
    connection.refresh_from_db()
    assert connection.muted_at is None


def test_a_snooze_carries_over_when_the_same_connections_problem_changes_cause(
    office: dict[str, Any], world: FakeWorld, clock: Clock, client: Any
) -> None:
    connection = office["connection"]
    connection.__class__.objects.filter(pk=connection.pk).update(
        status="degraded", reason="transient", degraded_since=clock.now() - timedelta(hours=2), consecutive_failures=3
    )
    client.force_login(office["adviser"])
    assert client.post(reverse("connection_quiet", args=[connection.pk]), {"action": "day"}).status_code == 302
    degraded = ConnectionProblem.objects.get(connection=connection, cause=Cause.DEGRADED)
    assert degraded.snoozed_until == clock.now() + timedelta(days=1)

    # The provider now refuses the token: the same trouble as another cause, still within the snooze.
    world.probe_script.append(ProviderError.reauth(FailureReason.REVOKED, "Fake: revoked."))
    connection_check(connection_id=connection.pk, force=True)
    _run_quarter_hours(clock, 4 * 12)
    broken = ConnectionProblem.objects.get(connection=connection, cause=Cause.BROKEN)
    assert broken.snoozed_until == degraded.snoozed_until
    assert ConnectionProblem.objects.get(pk=degraded.pk).resolution == ConnectionProblem.Resolution.SUPERSEDED
    row = f'href="{reverse("connection_detail", args=[connection.pk])}"'
    assert row not in client.get(reverse("attention_list")).content.decode()
    assert _digests("ana@example.test") == []

    _run_quarter_hours(clock, 4 * 13)  # the day is over: it comes back, once
    assert row in client.get(reverse("attention_list")).content.decode()
    bodies = _digests("ana@example.test")
    assert len(bodies) == 1
    assert "BACK FROM SNOOZE" in bodies[0]


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_an_open_problems_mute_onto_its_connection_and_back() -> None:
    from django.db import connection as db
    from django.db.migrations.executor import MigrationExecutor

    before, after = (
        [("connections", "0011_request_item_withdrawn")],
        [("connections", "0012_mute_belongs_to_the_connection")],
    )
    executor = MigrationExecutor(db)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    firm = old.get_model("connections", "Firm").objects.create(name="Harbour Wealth")
    household = old.get_model("connections", "Household").objects.create(firm=firm, name="Ashford")
    person = old.get_model("connections", "Client").objects.create(household=household, name="Linh")
    app = old.get_model("connections", "ProviderApp").objects.create(name="Fake", provider="turnqey")
    make = old.get_model("connections", "Connection").objects.create
    muted, loud = (make(household=household, client=person, provider_app=app, provider="turnqey") for _ in range(2))
    problem = old.get_model("connections", "ConnectionProblem").objects
    at = timezone.now().replace(microsecond=0)
    problem.create(connection=muted, cause="broken", muted_at=at)
    problem.create(connection=loud, cause="broken")
    problem.create(connection=loud, cause="degraded", muted_at=at, closed_at=at)  # a mute that already ended

    executor = MigrationExecutor(db)
    executor.migrate(after)
    new = executor.loader.project_state(after).apps.get_model("connections", "Connection").objects
    assert new.get(pk=muted.pk).muted_at == at
    assert new.get(pk=loud.pk).muted_at is None

    executor = MigrationExecutor(db)
    executor.migrate(before)
    back = executor.loader.project_state(before).apps.get_model("connections", "ConnectionProblem").objects
    assert back.get(connection_id=muted.pk).muted_at == at
    executor = MigrationExecutor(db)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
