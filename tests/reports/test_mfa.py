"""The second factor: setting it up, signing in with it or a recovery code, firms that require it, throttling."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from connections import models as m
from mfa.models import CodeFailures
from reports.models import AuditEntry

from .conftest import PASSWORD, World, code_for, enrolled

pytestmark = pytest.mark.django_db


def sign_in(browser: Client, username: str = "alice") -> Any:
    return browser.post(reverse("login"), {"username": username, "password": PASSWORD})


def test_setting_up_an_authenticator_confirms_it_and_shows_recovery_codes_once(client: Client, world: World) -> None:
    client.force_login(world.adviser)
    page = client.get(reverse("mfa:setup"))
    assert page.status_code == 200
    assert page["Cache-Control"] == "no-store"
    body = page.content.decode()
    assert 'src="data:image/svg+xml' in body
    assert "Key:" in body
    device = TOTPDevice.objects.get(user=world.adviser, confirmed=False)

    wrong = client.post(reverse("mfa:setup"), {"code": "12345"})
    assert wrong.status_code == 400
    assert not TOTPDevice.objects.filter(user=world.adviser, confirmed=True).exists()
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=0, throttling_failure_timestamp=None)
    done = client.post(reverse("mfa:setup"), {"code": code_for(device)})

    assert done.status_code == 200
    device.refresh_from_db()
    assert device.confirmed
    codes = StaticDevice.objects.get(user=world.adviser).token_set.values_list("token", flat=True)
    assert len(codes) == 10
    assert all(code in done.content.decode() for code in codes)
    assert client.get(reverse("dashboard")).status_code == 200  # this session has given its code


def test_signing_in_asks_for_the_code_before_anything_else(client: Client, world: World) -> None:
    device = enrolled(world.adviser)

    assert sign_in(client)["Location"] == reverse("dashboard")
    held = client.get(reverse("household_detail", args=[world.household.pk]))
    assert held.status_code == 302
    assert held["Location"].startswith(reverse("mfa:verify"))
    assert client.get(reverse("connection_detail", args=[world.connection.pk])).status_code == 302

    passed = client.post(
        reverse("mfa:verify"), {"code": code_for(device), "next": f"/households/{world.household.pk}/"}
    )
    assert passed["Location"] == f"/households/{world.household.pk}/"
    assert client.get(reverse("household_detail", args=[world.household.pk])).status_code == 200


def test_a_recovery_code_signs_in_once(client: Client, world: World) -> None:
    enrolled(world.adviser)  # recovery code "recover1"
    sign_in(client)
    assert client.post(reverse("mfa:verify"), {"code": "RECOVER1"}).status_code == 302
    assert client.get(reverse("dashboard")).status_code == 200

    again = Client()
    sign_in(again)
    refused = again.post(reverse("mfa:verify"), {"code": "recover1"})
    assert refused.status_code == 400
    assert again.get(reverse("dashboard")).status_code == 302


def test_a_firm_that_requires_it_walks_members_without_one_through_setup(client: Client, world: World) -> None:
    m.Firm.objects.filter(pk=world.firm.pk).update(mfa_required=True)
    sign_in(client)

    held = client.get(reverse("dashboard"))

    assert held.status_code == 302
    assert held["Location"].startswith(reverse("mfa:setup"))
    assert "Your firm requires a code" in client.get(held["Location"]).content.decode()
    other_firm = Client()
    sign_in(other_firm, "mallory")
    assert other_firm.get(reverse("dashboard")).status_code == 200


def test_a_required_second_factor_cannot_be_turned_off(client: Client, world: World) -> None:
    device = enrolled(world.adviser)
    m.Firm.objects.filter(pk=world.firm.pk).update(mfa_required=True)
    sign_in(client)
    client.post(reverse("mfa:verify"), {"code": code_for(device)})

    client.post(reverse("mfa:remove"))

    assert TOTPDevice.objects.filter(user=world.adviser, confirmed=True).exists()


def test_admin_users_always_need_it_in_production(client: Client, world: World, settings: Any) -> None:
    settings.MFA_REQUIRED_FOR_STAFF = True
    staff = world.firm_admin
    staff.is_staff = True
    staff.save()
    sign_in(client, "carol")

    held = client.get(reverse("admin:index"))

    assert held.status_code == 302
    assert held["Location"].startswith(reverse("mfa:setup"))


def test_admin_users_may_use_a_password_alone_in_development(client: Client, world: World, settings: Any) -> None:
    settings.MFA_REQUIRED_FOR_STAFF = False
    world.firm_admin.is_staff = True
    world.firm_admin.save()
    sign_in(client, "carol")
    assert client.get(reverse("admin:index")).status_code == 200


def test_staff_need_it_by_default_when_debug_is_off() -> None:
    import subprocess
    import sys

    env = {
        "DEBUG": "false",
        "SECRET_KEY": "x" * 50,
        "TOKEN_ENCRYPTION_KEYS": "A" * 43 + "=",
        "ALLOWED_HOSTS": "portal.example",
        "DATABASE_URL": "sqlite:////tmp/never-opened.sqlite3",
        "EMAIL_URL": "smtp+tls://mail.example:587",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, "-c", "from portal import settings; print(settings.MFA_REQUIRED_FOR_STAFF)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "True"


def test_each_wrong_code_makes_the_next_try_wait_twice_as_long(client: Client, world: World) -> None:
    device = enrolled(world.adviser)
    sign_in(client)
    for _ in range(3):
        assert client.post(reverse("mfa:verify"), {"code": "000001"}).status_code == 400
    device.refresh_from_db()
    assert device.throttling_failure_count >= 1

    # The right code is refused too while the wait (1, 2, 4 ... seconds, doubling) runs.
    throttled = client.post(reverse("mfa:verify"), {"code": code_for(device)})
    assert throttled.status_code == 400
    assert "Too many wrong codes" in throttled.content.decode()

    # Once the wait is over, the right code works and the count starts again.
    TOTPDevice.objects.filter(pk=device.pk).update(
        throttling_failure_timestamp=timezone.now() - dt.timedelta(minutes=5)
    )
    assert client.post(reverse("mfa:verify"), {"code": code_for(device)}).status_code == 302
    device.refresh_from_db()
    assert device.throttling_failure_count == 0


def test_recovery_codes_are_throttled_too(client: Client, world: World) -> None:
    enrolled(world.adviser)
    sign_in(client)
    client.post(reverse("mfa:verify"), {"code": "notacode"})
    assert "Too many wrong codes" in client.post(reverse("mfa:verify"), {"code": "recover1"}).content.decode()


def test_the_second_step_keeps_signing_out_and_client_links_open(client: Client, world: World) -> None:
    enrolled(world.adviser)
    sign_in(client)
    assert client.get(reverse("client_link", args=["not-a-token"])).status_code in (400, 404, 410)
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("dashboard"))["Location"].startswith(reverse("login"))


# --- The lockout: like axes for passwords ---------------------------------------------------------


@pytest.fixture
def without_the_doubling_wait(settings: Any) -> Any:
    """django-otp's per-device wait switched off, so only the lockout refuses codes typed quickly."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    settings.OTP_STATIC_THROTTLE_FACTOR = 0
    settings.AXES_FAILURE_LIMIT = 5
    settings.AXES_COOLOFF_TIME = 0.25
    return settings


def _wrong(browser: Client, code: str = "000001") -> Any:
    return browser.post(reverse("mfa:verify"), {"code": code})


def test_after_five_wrong_codes_even_the_right_one_is_refused_until_the_cool_off_ends(
    client: Client, world: World, without_the_doubling_wait: Any
) -> None:
    device = enrolled(world.adviser)
    sign_in(client)
    for _ in range(4):
        assert _wrong(client).status_code == 400
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.SECOND_FACTOR_LOCKED).exists()

    locked = _wrong(client)

    assert locked.status_code == 429
    assert "no code is accepted, not even the right one" in locked.content.decode()
    (entry,) = AuditEntry.objects.filter(action=AuditEntry.Action.SECOND_FACTOR_LOCKED)
    assert (entry.actor, entry.details["failures"]) == (world.adviser, 5)
    # The fifth wrong code is the lockout's one row, not a refusal as well.
    assert AuditEntry.objects.filter(action=AuditEntry.Action.SECOND_FACTOR_FAILED).count() == 4
    right = client.post(reverse("mfa:verify"), {"code": code_for(device)})
    assert right.status_code == 429
    assert "not even the right one" in right.content.decode()
    assert client.get(reverse("dashboard")).status_code == 302
    # The count is the user's, kept in the database: another session (or process) is locked out too.
    elsewhere = Client()
    sign_in(elsewhere)
    assert "not even the right one" in elsewhere.get(reverse("mfa:verify")).content.decode()
    assert elsewhere.post(reverse("mfa:verify"), {"code": code_for(device)}).status_code == 429
    refused = AuditEntry.objects.filter(action=AuditEntry.Action.SECOND_FACTOR_FAILED, details__locked=True)
    assert refused.count() == 2

    # Fifteen minutes (axes' cool-off) later, the right code works and the count is gone.
    past = timezone.now() - dt.timedelta(minutes=15, seconds=1)
    CodeFailures.objects.filter(user=world.adviser).update(locked_until=past, last_failure_at=past)
    assert client.post(reverse("mfa:verify"), {"code": code_for(device)}).status_code == 302
    assert not CodeFailures.objects.filter(user=world.adviser).exists()


def test_recovery_codes_count_towards_the_same_lockout(
    client: Client, world: World, without_the_doubling_wait: Any
) -> None:
    enrolled(world.adviser)  # recovery code "recover1"
    sign_in(client)
    for code in ("000001", "000002", "notacode", "000003"):
        assert _wrong(client, code).status_code == 400

    assert _wrong(client, "stillnot").status_code == 429
    assert client.post(reverse("mfa:verify"), {"code": "recover1"}).status_code == 429
    assert StaticDevice.objects.get(user=world.adviser).token_set.filter(token="recover1").exists()  # not spent


def test_a_right_code_before_the_limit_starts_the_count_again(
    client: Client, world: World, without_the_doubling_wait: Any
) -> None:
    device = enrolled(world.adviser)
    sign_in(client)
    for _ in range(4):
        _wrong(client)
    assert client.post(reverse("mfa:verify"), {"code": code_for(device)}).status_code == 302

    again = Client()
    sign_in(again)
    for _ in range(4):
        assert _wrong(again).status_code == 400
    assert CodeFailures.objects.get(user=world.adviser, address="127.0.0.1").locked_until is None


def _from(address: str) -> Client:
    return Client(REMOTE_ADDR=address)


def test_wrong_codes_from_one_address_lock_that_address_out_but_not_the_user_elsewhere(
    world: World, without_the_doubling_wait: Any
) -> None:
    device = enrolled(world.adviser)
    guesser = _from("203.0.113.7")
    sign_in(guesser)
    for _ in range(4):
        assert _wrong(guesser).status_code == 400

    assert _wrong(guesser).status_code == 429
    assert guesser.post(reverse("mfa:verify"), {"code": code_for(device)}).status_code == 429

    # The real user, from their own address, is not held up by it.
    user = _from("198.51.100.20")
    sign_in(user)
    assert "not even the right one" not in user.get(reverse("mfa:verify")).content.decode()
    assert user.post(reverse("mfa:verify"), {"code": code_for(device)}).status_code == 302
    assert user.get(reverse("dashboard")).status_code == 200
    # ... and their right code does not lift the lockout at the guesser's address.
    again = _from("203.0.113.7")
    sign_in(again)
    assert again.post(reverse("mfa:verify"), {"code": code_for(device)}).status_code == 429

    (entry,) = AuditEntry.objects.filter(action=AuditEntry.Action.SECOND_FACTOR_LOCKED)
    assert entry.ip_address == "203.0.113.7"
    assert entry.details["address"] == "203.0.113.7"
    assert entry.details["everywhere"] is False
    assert "from 203.0.113.7" in entry.message


def test_wrong_codes_spread_over_many_addresses_reach_the_users_ceiling_and_lock_every_address(
    world: World, without_the_doubling_wait: Any, settings: Any
) -> None:
    settings.MFA_USER_FAILURE_CEILING = 6
    device = enrolled(world.adviser)
    for third, wrong_codes in ((1, 2), (2, 2), (3, 1)):  # under the per-address limit at each
        guesser = _from(f"203.0.113.{third}")
        sign_in(guesser)
        for _ in range(wrong_codes):
            assert _wrong(guesser).status_code == 400
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.SECOND_FACTOR_LOCKED).exists()

    sixth = _from("203.0.113.4")
    sign_in(sixth)
    assert _wrong(sixth).status_code == 429

    # The sixth wrong code overall locked the user out everywhere, including an address never used.
    user = _from("198.51.100.20")
    sign_in(user)
    assert user.post(reverse("mfa:verify"), {"code": code_for(device)}).status_code == 429
    (entry,) = AuditEntry.objects.filter(action=AuditEntry.Action.SECOND_FACTOR_LOCKED)
    assert (entry.details["everywhere"], entry.details["failures"]) == (True, 6)
    assert "from every address" in entry.message
