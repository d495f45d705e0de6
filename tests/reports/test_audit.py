"""Every action that changes something or reveals client data writes exactly one audit row; nobody can change one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client, RequestFactory
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from connections import lifecycle, services
from connections import models as m
from reports import audit, receivers
from reports.models import AppendOnly, AuditEntry
from tests.factories import MembershipFactory, UserFactory

from .conftest import PASSWORD, World, code_for, enrolled

pytestmark = pytest.mark.django_db
Action = AuditEntry.Action
ADDRESS = "198.51.100.7"


def verified_browser(user: Any) -> Client:
    browser = Client(REMOTE_ADDR=ADDRESS)
    browser.force_login(user)
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    assert browser.post(reverse("mfa:verify"), {"code": code_for(device)}).status_code == 302
    return browser


@contextmanager
def in_request(user: Any) -> Iterator[None]:
    """What a view of some other app would do: the middleware has put its request in context."""
    request = RequestFactory().post("/somewhere/", REMOTE_ADDR=ADDRESS)
    request.user = user
    with audit.request_context(request):
        yield


@dataclass
class Case:
    action: str
    actor: str  # World attribute of who should be named ("" for nobody)
    prepare: Callable[[World, Any], Any] = lambda world, fake: None
    perform: Callable[[World, Any, Any], None] = lambda world, fake, prepared: None


def _sign_in(world: World, fake: Any, _: Any) -> None:
    Client(REMOTE_ADDR=ADDRESS).post(reverse("login"), {"username": "alice", "password": PASSWORD})


def _sign_in_fails(world: World, fake: Any, _: Any) -> None:
    Client(REMOTE_ADDR=ADDRESS).post(reverse("login"), {"username": "alice", "password": "not-it"})


def _browser_with_device(world: World, fake: Any) -> tuple[Client, TOTPDevice]:
    device = enrolled(world.adviser)
    browser = Client(REMOTE_ADDR=ADDRESS)
    browser.force_login(world.adviser)
    return browser, device


def _second_factor(world: World, fake: Any, prepared: Any) -> None:
    browser, device = prepared
    browser.post(reverse("mfa:verify"), {"code": code_for(device)})


def _second_factor_wrong(world: World, fake: Any, prepared: Any) -> None:
    browser, device = prepared
    browser.post(reverse("mfa:verify"), {"code": "000000" if code_for(device) != "000000" else "111111"})


def _prepare_setup(world: World, fake: Any) -> Client:
    browser = Client(REMOTE_ADDR=ADDRESS)
    browser.force_login(world.adviser)
    browser.get(reverse("mfa:setup"))
    return browser


def _set_up(world: World, fake: Any, browser: Client) -> None:
    device = TOTPDevice.objects.get(user=world.adviser, confirmed=False)
    assert browser.post(reverse("mfa:setup"), {"code": code_for(device)}).status_code == 200


def _prepare_verified(world: World, fake: Any) -> Client:
    enrolled(world.adviser)
    return verified_browser(world.adviser)


def _remove(world: World, fake: Any, browser: Client) -> None:
    browser.post(reverse("mfa:remove"))


def _new_codes(world: World, fake: Any, browser: Client) -> None:
    browser.post(reverse("mfa:recovery_codes"))


def _member_added(world: World, fake: Any, _: Any) -> None:
    with in_request(world.firm_admin):
        MembershipFactory(firm=world.firm, user=UserFactory(username="newcomer"))


def _role_changed(world: World, fake: Any, _: Any) -> None:
    membership = m.Membership.objects.get(user=world.adviser)
    membership.role = m.Membership.Role.FIRM_ADMIN
    with in_request(world.firm_admin):
        membership.save()


def _member_removed(world: World, fake: Any, _: Any) -> None:
    with in_request(world.firm_admin):
        m.Membership.objects.get(user=world.other_adviser).delete()


def _assigned(world: World, fake: Any, _: Any) -> None:
    with in_request(world.firm_admin):
        world.other_household.advisers.add(world.adviser)


def _assigned_from_the_users_side(world: World, fake: Any, _: Any) -> None:
    with in_request(world.firm_admin):
        world.adviser.assigned_households.add(world.other_household)


def _unassigned(world: World, fake: Any, _: Any) -> None:
    with in_request(world.firm_admin):
        world.household.advisers.remove(world.adviser)


def _unassigned_by_clear(world: World, fake: Any, _: Any) -> None:
    with in_request(world.firm_admin):
        world.household.advisers.clear()


def _link_sent(world: World, fake: Any, _: Any) -> None:
    with in_request(world.adviser):
        services.client_link_create(
            household=world.household, client=world.client, user=world.adviser, connection=world.connection
        )


def _broken(world: World, fake: Any) -> None:
    m.Connection.objects.filter(pk=world.connection.pk).update(status="needs_reconnect", reason="revoked")
    fake.external_account_id = world.connection.external_account_id


def _reconnected(world: World, fake: Any, _: Any) -> None:
    with in_request(world.adviser):
        lifecycle.grant_apply(
            connection=world.connection, grant=fake.grant("coinbase"), purpose="reconnect", actor=world.adviser
        )


def _connected(world: World, fake: Any, _: Any) -> None:
    pending = lifecycle.connection_start(
        household=world.household,
        client=world.client,
        provider_app=world.turnqey,
        platform="kraken",
        actor=world.adviser,
        actor_label="",
    )
    fake.external_account_id = "new-account"
    with in_request(world.adviser):
        lifecycle.grant_apply(connection=pending, grant=fake.grant("kraken"), purpose="connect", actor=world.adviser)


def _disconnected(world: World, fake: Any, _: Any) -> None:
    with in_request(world.adviser):
        services.connection_disconnect_now(connection=world.connection, user=world.adviser)


def _as_firm_admin(world: World, fake: Any) -> Client:
    browser = Client(REMOTE_ADDR=ADDRESS)
    browser.force_login(world.firm_admin)
    return browser


def _exported(world: World, fake: Any, browser: Client) -> None:
    b"".join(browser.get(reverse("reports:audit_csv")).streaming_content)


def _settings_changed(world: World, fake: Any, browser: Client) -> None:
    browser.post(reverse("reports:settings"), {"mfa_required": "on", "freshness_window_hours": "24"})


def _staff(world: World, fake: Any) -> Client:
    world.firm_admin.is_staff = world.firm_admin.is_superuser = True
    world.firm_admin.save()
    browser = Client(REMOTE_ADDR=ADDRESS)
    browser.force_login(world.firm_admin)
    return browser


def _admin_edit(world: World, fake: Any, browser: Client) -> None:
    response = browser.post(reverse("admin:auth_group_add"), {"name": "Compliance reviewers"})
    assert response.status_code == 302, response.content.decode()[:2000]


def _watched(world: World, fake: Any, _: Any) -> None:
    with in_request(world.firm_admin):
        world.turnqey.rate_limit_per_second = 5
        world.turnqey.save(update_fields=["rate_limit_per_second"])


CASES = {
    "sign-in": Case(Action.SIGN_IN, "adviser", perform=_sign_in),
    "failed sign-in": Case(Action.SIGN_IN_FAILED, "", perform=_sign_in_fails),
    "second factor given": Case(Action.SECOND_FACTOR_PASSED, "adviser", _browser_with_device, _second_factor),
    "wrong second factor": Case(Action.SECOND_FACTOR_FAILED, "adviser", _browser_with_device, _second_factor_wrong),
    "second factor set up": Case(Action.MFA_ENABLED, "adviser", _prepare_setup, _set_up),
    "second factor removed": Case(Action.MFA_REMOVED, "adviser", _prepare_verified, _remove),
    "recovery codes replaced": Case(Action.RECOVERY_CODES_REPLACED, "adviser", _prepare_verified, _new_codes),
    "member added": Case(Action.MEMBER_ADDED, "firm_admin", perform=_member_added),
    "role changed": Case(Action.ROLE_CHANGED, "firm_admin", perform=_role_changed),
    "member removed": Case(Action.MEMBER_REMOVED, "firm_admin", perform=_member_removed),
    "household assigned": Case(Action.ASSIGNMENT_ADDED, "firm_admin", perform=_assigned),
    "household assigned (user side)": Case(
        Action.ASSIGNMENT_ADDED, "firm_admin", perform=_assigned_from_the_users_side
    ),
    "household unassigned": Case(Action.ASSIGNMENT_REMOVED, "firm_admin", perform=_unassigned),
    "assignments cleared": Case(Action.ASSIGNMENT_REMOVED, "firm_admin", perform=_unassigned_by_clear),
    "client link sent": Case(Action.LINK_SENT, "adviser", perform=_link_sent),
    "connected": Case(Action.CONNECTED, "adviser", perform=_connected),
    "reconnected": Case(Action.RECONNECTED, "adviser", _broken, _reconnected),
    "disconnected": Case(Action.DISCONNECTED, "adviser", perform=_disconnected),
    "exported": Case(Action.EXPORTED, "firm_admin", _as_firm_admin, _exported),
    "firm settings changed": Case(Action.FIRM_SETTINGS_CHANGED, "firm_admin", _as_firm_admin, _settings_changed),
    "admin edit": Case(Action.ADMIN_EDIT, "firm_admin", _staff, _admin_edit),
    "watched model changed": Case(Action.INTEGRATION_CHANGED, "firm_admin", perform=_watched),
}


@pytest.fixture
def watching_provider_apps(settings: Any) -> Iterator[None]:
    """Stands in for the API's models (not installed here): ProviderApp watched like an API key."""
    from django.db.models.signals import post_delete, post_save

    settings.AUDIT_WATCHED_MODELS = {"connections.ProviderApp": "provider app"}
    receivers.watch_models(settings.AUDIT_WATCHED_MODELS)
    yield
    post_save.disconnect(sender=m.ProviderApp, dispatch_uid="audit-watch-save-connections.ProviderApp")
    post_delete.disconnect(sender=m.ProviderApp, dispatch_uid="audit-watch-delete-connections.ProviderApp")


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_action_writes_exactly_one_audit_row(
    name: str, world: World, fake_provider: Any, django_capture_on_commit_callbacks: Any, request: Any
) -> None:
    case = CASES[name]
    if name == "watched model changed":
        request.getfixturevalue("watching_provider_apps")
    prepared = case.prepare(world, fake_provider)
    before = set(AuditEntry.objects.values_list("pk", flat=True))

    with django_capture_on_commit_callbacks(execute=True):
        case.perform(world, fake_provider, prepared)

    new = list(AuditEntry.objects.exclude(pk__in=before))
    assert [e.action for e in new] == [case.action], [(e.action, e.message) for e in new]
    (entry,) = new
    expected_actor = getattr(world, case.actor) if case.actor else None
    assert entry.actor == expected_actor
    assert entry.firm == world.firm
    assert entry.ip_address == ADDRESS
    assert entry.message
    assert "secret" not in str(entry.details).lower()
    assert PASSWORD not in entry.message


def test_a_failed_sign_in_records_the_name_typed_never_the_password(world: World) -> None:
    Client(REMOTE_ADDR=ADDRESS).post(reverse("login"), {"username": "alice", "password": "hunter2-wrong"})
    entry = AuditEntry.objects.get(action=Action.SIGN_IN_FAILED)
    assert (entry.actor_name, entry.ip_address, entry.firm) == ("alice", ADDRESS, world.firm)
    assert "hunter2" not in f"{entry.message} {entry.details}"


def test_a_client_reconnecting_through_their_link_is_named_as_the_client(
    world: World, fake_provider: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _broken(world, fake_provider)
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.grant_apply(
            connection=world.connection,
            grant=fake_provider.grant("coinbase"),
            purpose="reconnect",
            actor_label="client-link",
        )
    entry = AuditEntry.objects.get(action=Action.RECONNECTED)
    assert (entry.actor, entry.actor_name, entry.household) == (None, "the client through their link", world.household)


def test_the_catch_up_folds_an_event_no_signal_announced_once(world: World) -> None:
    m.ConnectionEvent.objects.bulk_create(
        [m.ConnectionEvent(connection=world.connection, kind="disconnected", actor=world.adviser, message="gone")]
    )
    assert receivers.events_fold_recent() == 1
    assert receivers.events_fold_recent() == 0
    entry = AuditEntry.objects.get(action=Action.DISCONNECTED)
    assert (entry.actor, entry.ip_address, entry.connection_event.message) == (world.adviser, None, "gone")


def test_an_admin_edit_is_linked_to_djangos_own_log(world: World) -> None:
    browser = _staff(world, None)
    _admin_edit(world, None, browser)
    entry = AuditEntry.objects.get(action=Action.ADMIN_EDIT)
    assert entry.admin_log == LogEntry.objects.get()
    assert "Compliance reviewers" in entry.message


# --- Append-only -------------------------------------------------------------------------------


@pytest.fixture
def entry(world: World) -> AuditEntry:
    return audit.record(Action.EXPORTED, actor=world.firm_admin, message="Exported connections (CSV).")


def test_the_application_cannot_change_or_delete_an_audit_row(entry: AuditEntry) -> None:
    entry.message = "rewritten"
    with pytest.raises(AppendOnly):
        entry.save()
    with pytest.raises(AppendOnly):
        entry.delete()
    with pytest.raises(AppendOnly):
        AuditEntry.objects.filter(pk=entry.pk).update(message="rewritten")
    with pytest.raises(AppendOnly):
        AuditEntry.objects.filter(pk=entry.pk).delete()
    assert AuditEntry.objects.get(pk=entry.pk).message == "Exported connections (CSV)."


def test_admin_shows_audit_rows_read_only_even_to_a_superuser(entry: AuditEntry, client: Client) -> None:
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    change = reverse("admin:reports_auditentry_change", args=[entry.pk])

    page = client.get(change)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert client.post(change, {"message": "rewritten", "action": "sign_in"}).status_code == 403
    assert client.post(reverse("admin:reports_auditentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    assert client.get(reverse("admin:reports_auditentry_add")).status_code == 403
    bulk = client.post(
        reverse("admin:reports_auditentry_changelist"),
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    assert AuditEntry.objects.get(pk=entry.pk).message == "Exported connections (CSV)."


# --- The firm admin's page and export -------------------------------------------------------------


def test_firm_admin_filters_the_trail_by_user_action_household_and_date(client: Client, world: World) -> None:
    audit.record(Action.EXPORTED, actor=world.adviser, household=world.household, message="alice exported")
    audit.record(Action.LINK_SENT, actor=world.adviser, household=world.household, message="alice sent")
    audit.record(Action.EXPORTED, actor=world.other_adviser, household=world.other_household, message="bob exported")
    foreign = m.Membership.objects.get(user__username="mallory").user
    audit.record(Action.EXPORTED, actor=foreign, message="mallory exported")
    client.force_login(world.firm_admin)

    everything = client.get(reverse("reports:audit")).content.decode()
    filtered = client.get(
        reverse("reports:audit"), {"user": world.adviser.pk, "action": "exported", "household": world.household.pk}
    ).content.decode()

    assert "alice exported" in everything
    assert "bob exported" in everything
    assert "mallory exported" not in everything
    assert "alice exported" in filtered
    assert "alice sent" not in filtered
    assert "bob exported" not in filtered


def test_the_audit_trail_is_for_firm_admins_only(client: Client, world: World) -> None:
    client.force_login(world.adviser)
    assert client.get(reverse("reports:audit")).status_code == 403
    assert client.get(reverse("reports:audit_csv")).status_code == 403
    assert client.get(reverse("reports:access")).status_code == 403


def test_access_review_lists_every_member_with_role_households_sign_in_and_second_factor(
    client: Client, world: World
) -> None:
    enrolled(world.other_adviser)
    client.force_login(world.firm_admin)

    from .conftest import csv_rows

    rows = {r["User"]: r for r in csv_rows(client.get(reverse("reports:access_csv")))}

    assert set(rows) == {"alice", "bob", "carol"}
    assert (rows["alice"]["Role"], rows["alice"]["Assigned households"], rows["alice"]["Second factor"]) == (
        "Adviser",
        "Nguyen Household",
        "off",
    )
    assert rows["bob"]["Second factor"] == "on"
    assert rows["carol"]["Role"] == "Firm admin"
    assert rows["carol"]["Last sign-in"]
    page = client.get(reverse("reports:access")).content.decode()
    assert "Okoro Household" in page
    assert "mallory" not in page


def test_access_review_shows_each_members_live_api_keys_and_never_a_revoked_one(client: Client, world: World) -> None:
    from api.keys import api_key_create, api_key_revoke

    live = api_key_create(firm=world.firm, name="CRM sync", user=world.firm_admin)
    gone = api_key_create(firm=world.firm, name="Old export", user=world.firm_admin)
    api_key_revoke(api_key=gone.api_key, user=world.firm_admin)
    client.force_login(world.firm_admin)

    from .conftest import csv_rows

    rows = {r["User"]: r for r in csv_rows(client.get(reverse("reports:access_csv")))}

    assert "CRM sync" in rows["carol"]["API keys"]
    assert live.api_key.prefix in rows["carol"]["API keys"]
    assert "Old export" not in rows["carol"]["API keys"]
    assert rows["alice"]["API keys"] == ""
    assert "CRM sync" in client.get(reverse("reports:access")).content.decode()


@pytest.mark.django_db(transaction=True)
def test_deleting_a_user_or_a_whole_firm_commits_and_stays_on_the_record(world: World) -> None:
    enrolled(world.adviser)
    mallory = m.Membership.objects.get(user__username="mallory")
    foreign_firm = mallory.firm

    world.adviser.delete()  # their membership and devices go with them
    foreign_firm.delete()  # and mallory's membership with it

    removed = {e.object_repr: e for e in AuditEntry.objects.filter(action=Action.MEMBER_REMOVED)}
    assert set(removed) == {"alice", "mallory"}
    assert removed["alice"].firm == world.firm
    assert removed["mallory"].firm is None  # the firm is gone; the words stay
    assert "Elsewhere Capital" in removed["mallory"].message
    assert AuditEntry.objects.filter(action=Action.MFA_REMOVED, object_repr="alice").count() == 1
