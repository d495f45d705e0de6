"""``claims.deadline_near_q`` (the SQL the attention list runs) agrees with ``rules.deadline_is_near``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from connections import lifecycle
from connections.lifecycle import rules
from connections.lifecycle.claims import deadline_near_q
from connections.models import Connection, Credential
from tests.factories import ConnectionFactory, CredentialFactory

minutes = st.integers(min_value=-60 * 24 * 4, max_value=60 * 24 * 4)


@pytest.mark.django_db
@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(left=minutes, age=st.integers(min_value=0, max_value=60 * 24 * 30), rolls=st.booleans())
def test_the_attention_query_and_the_rule_agree_on_every_deadline(app: Any, left: int, age: int, rolls: bool) -> None:
    now = timezone.now().replace(microsecond=0)
    deadline, basis = now + timedelta(minutes=left), now - timedelta(minutes=age)
    connection = ConnectionFactory(
        provider_app=app, reconnect_by=deadline, reconnect_by_rolls=rolls, connected_at=basis, created_at=basis
    )
    tunables = lifecycle.tunables()
    aliases, near = deadline_near_q(now=now, tunables=tunables)
    in_sql = (
        Connection.objects.filter(pk=connection.pk)
        .alias(deadline_basis=Coalesce(F("connected_at"), F("created_at")))
        .alias(**aliases)
        .filter(near)
        .exists()
    )
    by_rule = rules.deadline_is_near(deadline=deadline, basis=basis, now=now, tunables=tunables, rolls=rolls)
    assert in_sql == by_rule
    connection.delete()


@pytest.mark.django_db
@hsettings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(left=minutes, issued_ago=st.integers(min_value=0, max_value=60 * 24 * 30))
def test_the_public_deadline_query_measures_a_rolling_deadline_from_the_refresh_tokens_issue(
    app: Any, left: int, issued_ago: int
) -> None:
    now = timezone.now().replace(microsecond=0)
    deadline, issued = now + timedelta(minutes=left), now - timedelta(minutes=issued_ago)
    long_ago = now - timedelta(days=60)
    connection = ConnectionFactory(
        provider_app=app, reconnect_by=deadline, reconnect_by_rolls=True, connected_at=long_ago, created_at=long_ago
    )
    CredentialFactory(connection=connection, kind=Credential.Kind.REFRESH, issued_at=issued)
    tunables = lifecycle.tunables()
    connections, near = lifecycle.deadline_is_near_q(
        Connection.objects.filter(pk=connection.pk), now=now, tunables=tunables
    )
    by_rule = rules.deadline_is_near(deadline=deadline, basis=issued, now=now, tunables=tunables, rolls=True)
    assert connections.filter(near).exists() == by_rule
    connection.delete()
