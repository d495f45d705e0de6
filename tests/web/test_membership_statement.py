"""Every page's membership read (and the second step's) comes from SQL built once per process: the same answer
as the queryset, for each user."""

from __future__ import annotations

from typing import Any

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from connections import models as m
from connections import selectors
from connections.selectors.scoping import membership_read
from mfa import policy
from tests.factories import FirmFactory, MembershipFactory, UserFactory

from .conftest import World


def _seen(membership: m.Membership | None) -> tuple[Any, ...] | None:
    if membership is None:
        return None
    return (membership.pk, membership.user_id, membership.firm_id, membership.firm.name, membership.role,
            membership.time_zone_name)  # type: ignore[attr-defined]


def test_each_user_reads_their_own_membership_with_firm_and_time_zone(world: World) -> None:
    m.NotificationSettings.objects.create(user=world.adviser, time_zone="Europe/London")
    elsewhere = MembershipFactory(firm=FirmFactory(name="Elsewhere Wealth"), role=m.Membership.Role.FIRM_ADMIN)
    for user in (world.adviser, world.other_adviser, world.firm_admin, elsewhere.user):
        expected = selectors.membership_queryset(user_id=user.pk).first()
        assert _seen(membership_read(user_id=user.pk)) == _seen(expected)
    assert membership_read(user_id=world.adviser.pk).time_zone_name == "Europe/London"  # type: ignore[union-attr]
    assert membership_read(user_id=elsewhere.user_id).firm.name == "Elsewhere Wealth"  # type: ignore[union-attr]


def test_a_user_without_a_firm_has_no_membership(world: World) -> None:
    assert membership_read(user_id=UserFactory().pk) is None


@pytest.mark.parametrize("confirmed", [True, False])
def test_the_second_step_counts_only_a_confirmed_authenticator_of_that_user(world: World, confirmed: bool) -> None:
    TOTPDevice.objects.create(user=world.other_adviser, name="Authenticator app", confirmed=True)
    TOTPDevice.objects.create(user=world.adviser, name="Authenticator app", confirmed=confirmed)
    standing = policy.standing(world.adviser)
    assert standing.has_second_factor is confirmed
    assert standing.required is False
    assert world.adviser.membership.firm_id == world.firm.pk
    assert policy.standing(world.firm_admin).has_second_factor is False
