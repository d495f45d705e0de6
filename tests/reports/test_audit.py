"""Every action that changes something or reveals client data writes exactly one audit row; nobody can change one."""

from __future__ import annotations

import datetime as dt
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
    address: str | None = ADDRESS  # None for what a job does
    says: str = ""  # words the row's message must hold
    check: Callable[[World, Any, AuditEntry], None] = lambda world, prepared, entry: None


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


def _four_wrong_codes(world: World, fake: Any) -> tuple[Client, TOTPDevice]:
    browser, device = _browser_with_device(world, fake)
    for _ in range(4):
        assert browser.post(reverse("mfa:verify"), {"code": "000001"}).status_code == 400
        # django-otp's doubling wait is not what this counts: clear it between tries.
        TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=0, throttling_failure_timestamp=None)
    return browser, device


def _fifth_wrong_code(world: World, fake: Any, prepared: Any) -> None:
    browser, _ = prepared
    assert browser.post(reverse("mfa:verify"), {"code": "000001"}).status_code == 429


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


def _admin_form(browser: Client, url: str) -> dict[str, Any]:
    """What the admin's change form would post as it stands: every input, select and textarea's value."""
    from html.parser import HTMLParser

    data: dict[str, Any] = {}

    class Form(HTMLParser):
        select: str | None = None
        textarea: str | None = None

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            name = a.get("name")
            if tag == "input" and name and a.get("type") not in ("submit", "button", "file"):
                if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                    return
                data.setdefault(name, []).append(a.get("value") or ("on" if a.get("type") == "checkbox" else ""))
            elif tag == "select" and name:
                self.select = name
                data.setdefault(name, [])
            elif tag == "option" and self.select and "selected" in a:
                data[self.select].append(a.get("value") or "")
            elif tag == "textarea" and name:
                self.textarea = name
                data[name] = [""]

        def handle_endtag(self, tag: str) -> None:
            if tag == "select":
                self.select = None
            elif tag == "textarea":
                self.textarea = None

        def handle_data(self, text: str) -> None:
            if self.textarea:
                data[self.textarea][0] += text

    page = browser.get(url)
    assert page.status_code == 200
    Form().feed(page.content.decode())
    return data


def _role_changed_in_admin(world: World, fake: Any, browser: Client) -> None:
    membership = m.Membership.objects.get(user=world.adviser)
    url = reverse("admin:connections_membership_change", args=[membership.pk])
    form = _admin_form(browser, url)
    form["role"] = [m.Membership.Role.FIRM_ADMIN]
    response = browser.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert m.Membership.objects.get(pk=membership.pk).role == m.Membership.Role.FIRM_ADMIN


def _role_changed_in_a_firms_admin_page(
    world: World, fake: Any, browser: Client, *, also: dict[str, list[str]] | None = None
) -> None:
    """The adviser made firm admin in their firm's admin page (with ``also`` changed in the same form)."""
    url = reverse("admin:connections_firm_change", args=[world.firm.pk])
    form = _admin_form(browser, url)
    membership = m.Membership.objects.get(user=world.adviser)
    (index,) = [k.split("-")[1] for k, v in form.items() if k.endswith("-id") and v == [str(membership.pk)]]
    prefix = next(k for k in form if k.endswith("-id")).split("-")[0]
    form[f"{prefix}-{index}-role"] = [m.Membership.Role.FIRM_ADMIN]
    form.update(also or {})
    response = browser.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert m.Membership.objects.get(pk=membership.pk).role == m.Membership.Role.FIRM_ADMIN


def _role_and_firm_name_changed_in_a_firms_admin_page(world: World, fake: Any, browser: Client) -> None:
    _role_changed_in_a_firms_admin_page(world, fake, browser, also={"name": ["Renamed Wealth Partners"]})
    world.firm.refresh_from_db()
    assert world.firm.name == "Renamed Wealth Partners"


def _role_and_email_changed_in_a_users_admin_page(world: World, fake: Any, browser: Client) -> None:
    url = reverse("admin:auth_user_change", args=[world.adviser.pk])
    form = _admin_form(browser, url)
    role = next(k for k in form if k.endswith("-role"))
    form[role] = [m.Membership.Role.FIRM_ADMIN]
    form["email"] = ["alice.new@example.test"]
    response = browser.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert m.Membership.objects.get(user=world.adviser).role == m.Membership.Role.FIRM_ADMIN
    world.adviser.refresh_from_db()
    assert world.adviser.email == "alice.new@example.test"


def _assigned_in_admin(world: World, fake: Any, browser: Client) -> None:
    url = reverse("admin:connections_household_change", args=[world.other_household.pk])
    form = _admin_form(browser, url)
    form["advisers"] = [*form.get("advisers", []), str(world.adviser.pk)]
    response = browser.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert world.other_household.advisers.filter(pk=world.adviser.pk).exists()


def _assigned_and_renamed_in_admin(world: World, fake: Any, browser: Client) -> None:
    url = reverse("admin:connections_household_change", args=[world.other_household.pk])
    form = _admin_form(browser, url)
    form["advisers"] = [*form.get("advisers", []), str(world.adviser.pk)]
    form["name"] = ["Renamed Household"]
    response = browser.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert world.other_household.advisers.filter(pk=world.adviser.pk).exists()


def _api_key_created(world: World, fake: Any, _: Any) -> None:
    from api.keys import api_key_create

    with in_request(world.firm_admin):
        api_key_create(firm=world.firm, name="CRM sync", user=world.firm_admin)


def _prepare_api_key(world: World, fake: Any) -> Any:
    from api.keys import api_key_create

    return api_key_create(firm=world.firm, name="CRM sync", user=world.firm_admin)


def _api_key_revoked(world: World, fake: Any, created: Any) -> None:
    from api.keys import api_key_revoke

    with in_request(world.firm_admin):
        assert api_key_revoke(api_key=created.api_key, user=world.firm_admin)
        assert not api_key_revoke(api_key=created.api_key, user=world.firm_admin)  # once only


def _names_the_key_never_its_secret(world: World, created: Any, entry: AuditEntry) -> None:
    assert entry.object_id == str(created.api_key.pk)
    assert created.key not in f"{entry.message} {entry.object_repr} {entry.details}"
    assert created.api_key.key_hash not in f"{entry.message} {entry.object_repr} {entry.details}"


def _prepare_endpoint(world: World, fake: Any) -> Any:
    from api.webhooks.services import endpoint_create

    # A local address over plain HTTP: the test lets it (test_each_action_writes_exactly_one_audit_row).
    return endpoint_create(firm=world.firm, url="http://127.0.0.1:9/hooks", event_types=["connection.needs_reconnect"])


def _endpoint_disabled(world: World, fake: Any, made: Any) -> None:
    from api.webhooks.services import endpoint_disable

    with in_request(world.firm_admin):
        endpoint_disable(endpoint=made.endpoint, reason="Paused by a person.")
    assert not made.endpoint.is_enabled


def _prepare_disabled_endpoint(world: World, fake: Any) -> Any:
    from api.models import WebhookEndpoint

    made = _prepare_endpoint(world, fake)
    WebhookEndpoint.objects.filter(pk=made.endpoint.pk).update(is_enabled=False)
    return made


def _endpoint_enabled(world: World, fake: Any, made: Any) -> None:
    from api.webhooks.services import endpoint_enable

    with in_request(world.firm_admin):
        endpoint_enable(endpoint=made.endpoint)
    assert made.endpoint.is_enabled


def _names_the_endpoint_never_its_secret(world: World, made: Any, entry: AuditEntry) -> None:
    assert entry.object_id == str(made.endpoint.pk)
    assert made.secret not in f"{entry.message} {entry.object_repr} {entry.details}"


def _prepare_delivery(world: World, fake: Any) -> Any:
    from api.models import WebhookDelivery, WebhookEvent

    made = _prepare_endpoint(world, fake)
    source = m.ConnectionEvent.objects.create(connection=world.connection, kind="check_failed", message="broken")
    event = WebhookEvent.objects.create(
        firm=world.firm,
        type="connection.needs_reconnect",
        connection=world.connection,
        source_event=source,
        occurred_at=source.created_at,
    )
    delivery = WebhookDelivery.objects.create(event=event, endpoint=made.endpoint, status="failed")
    return made, delivery


def _resent(world: World, fake: Any, prepared: Any) -> None:
    from api.webhooks.services import delivery_resend

    _, delivery = prepared
    with in_request(world.firm_admin):
        delivery_resend(delivery=delivery)


def _broken_three(world: World, fake: Any) -> list[m.Connection]:
    from tests.factories import ConnectionFactory

    m.Connection.objects.filter(pk=world.connection.pk).update(status="needs_reconnect", reason="revoked")
    more = [
        ConnectionFactory(
            client=world.client,
            provider_app=app,
            platform=platform,
            status="needs_reconnect",
            reason="revoked",
            next_check_at=None,
        )
        for app, platform in ((world.turnqey, "kraken"), (world.coinify, "coinify"))
    ]
    return [world.connection, *more]


def _request_sent(world: World, fake: Any, _: Any) -> None:
    with in_request(world.adviser):
        (result,) = services.reconnect_requests_create(households=[world.household], user=world.adviser)
    assert result.outcome == "sent"


def _names_the_request_its_client_and_each_connection(world: World, covered: Any, entry: AuditEntry) -> None:
    request = m.ReconnectRequest.objects.get()
    assert (entry.object_type, entry.object_id) == ("reconnect request", str(request.pk))
    assert entry.household == world.household
    assert entry.details["client_id"] == world.client.pk
    assert sorted(entry.details["connection_ids"]) == sorted(c.pk for c in covered)
    assert world.client.email in entry.message
    assert "Kraken via Turnqey" in entry.message


def _request_asked_earlier(world: World, fake: Any) -> m.ReconnectRequest:
    _broken_three(world, fake)
    with in_request(world.adviser):
        (result,) = services.reconnect_requests_create(households=[world.household], user=world.adviser)
    request = result.request
    assert request is not None
    earlier = request.created_at - dt.timedelta(days=3)
    m.ReconnectRequest.objects.filter(pk=request.pk).update(created_at=earlier)
    return request


def _reminded(world: World, fake: Any, request: m.ReconnectRequest) -> None:
    assert services.reconnect_reminders_send() == 1


def _names_the_reminder_and_its_request(world: World, request: m.ReconnectRequest, entry: AuditEntry) -> None:
    assert (entry.object_id, entry.actor_name) == (str(request.pk), "scheduled reminders")
    assert entry.details["reminder"] == 1
    assert len(entry.details["connection_ids"]) == 3


def _request_for_one(world: World, fake: Any) -> m.ReconnectRequest:
    m.Connection.objects.filter(pk=world.connection.pk).update(status="needs_reconnect", reason="revoked")
    with in_request(world.adviser):
        (result,) = services.reconnect_requests_create(households=[world.household], user=world.adviser)
    assert result.request is not None
    return result.request


def _request_extended(world: World, fake: Any, request: m.ReconnectRequest) -> None:
    from tests.factories import ConnectionFactory

    ConnectionFactory(
        client=world.client, provider_app=world.turnqey, platform="kraken", status="needs_reconnect", reason="revoked"
    )
    with in_request(world.adviser):
        (result,) = services.reconnect_requests_create(households=[world.household], user=world.adviser)
    assert result.outcome == "updated"


CASES = {
    "sign-in": Case(Action.SIGN_IN, "adviser", perform=_sign_in),
    "failed sign-in": Case(Action.SIGN_IN_FAILED, "", perform=_sign_in_fails),
    "second factor given": Case(Action.SECOND_FACTOR_PASSED, "adviser", _browser_with_device, _second_factor),
    "wrong second factor": Case(Action.SECOND_FACTOR_FAILED, "adviser", _browser_with_device, _second_factor_wrong),
    "second factor locked out": Case(
        Action.SECOND_FACTOR_LOCKED, "adviser", _four_wrong_codes, _fifth_wrong_code, says="5 wrong"
    ),
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
    "role changed in admin": Case(Action.ROLE_CHANGED, "firm_admin", _staff, _role_changed_in_admin),
    "role changed in a firm's admin page": Case(
        Action.ROLE_CHANGED, "firm_admin", _staff, _role_changed_in_a_firms_admin_page
    ),
    "role and firm name changed in a firm's admin page": Case(
        Action.ROLE_CHANGED,
        "firm_admin",
        _staff,
        _role_and_firm_name_changed_in_a_firms_admin_page,
        says="as well: Changed Name",
    ),
    "role and email changed in a user's admin page": Case(
        Action.ROLE_CHANGED, "firm_admin", _staff, _role_and_email_changed_in_a_users_admin_page, says="Email address"
    ),
    "household assigned in admin": Case(Action.ASSIGNMENT_ADDED, "firm_admin", _staff, _assigned_in_admin),
    "household assigned and renamed in admin": Case(
        Action.ASSIGNMENT_ADDED, "firm_admin", _staff, _assigned_and_renamed_in_admin, says="as well: Changed Name"
    ),
    "API key created": Case(Action.INTEGRATION_CHANGED, "firm_admin", perform=_api_key_created, says="created"),
    "API key revoked": Case(
        Action.INTEGRATION_CHANGED,
        "firm_admin",
        _prepare_api_key,
        _api_key_revoked,
        says="revoked",
        check=_names_the_key_never_its_secret,
    ),
    "webhook endpoint disabled": Case(
        Action.INTEGRATION_CHANGED,
        "firm_admin",
        _prepare_endpoint,
        _endpoint_disabled,
        says="disabled",
        check=_names_the_endpoint_never_its_secret,
    ),
    "webhook endpoint enabled": Case(
        Action.INTEGRATION_CHANGED,
        "firm_admin",
        _prepare_disabled_endpoint,
        _endpoint_enabled,
        says="enabled",
        check=_names_the_endpoint_never_its_secret,
    ),
    "webhook delivery resent": Case(
        Action.WEBHOOK_RESENT,
        "firm_admin",
        _prepare_delivery,
        _resent,
        says="sent again",
        check=lambda world, prepared, entry: _names_the_endpoint_never_its_secret(world, prepared[0], entry),
    ),
    "reconnect request sent (three connections)": Case(
        Action.REQUEST_SENT,
        "adviser",
        _broken_three,
        _request_sent,
        check=_names_the_request_its_client_and_each_connection,
    ),
    "reconnect reminder sent": Case(
        Action.REMINDER_SENT,
        "",
        _request_asked_earlier,
        _reminded,
        address=None,
        check=_names_the_reminder_and_its_request,
    ),
    "connection added to an open request": Case(
        Action.REQUEST_EXTENDED, "adviser", _request_for_one, _request_extended, says="Kraken via Turnqey"
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_action_writes_exactly_one_audit_row(
    name: str, world: World, fake_provider: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    case = CASES[name]
    # The webhook cases' endpoint is on this machine; production refuses private addresses and plain HTTP.
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES, settings.WEBHOOK_REQUIRE_HTTPS = True, False
    with django_capture_on_commit_callbacks(execute=True):
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
    assert entry.ip_address == case.address
    assert entry.message
    assert case.says in entry.message
    assert "secret" not in str(entry.details).lower()
    assert PASSWORD not in entry.message
    case.check(world, prepared, entry)


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
