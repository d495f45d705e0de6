"""A request's count and stamp on its key commit without waiting for the disk, and nothing else does."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection as db_connection
from django.db import transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from api.keys import api_key_create
from api.models import ApiKey
from api.v1.auth import read_key
from tests.factories import FirmFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ASYNC = "SET LOCAL synchronous_commit TO OFF"


def _synchronous_commit() -> str:
    with db_connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return str(cursor.fetchone()[0])


@pytest.mark.parametrize("limit", [0, 600])
def test_the_keys_stamp_is_its_own_transaction_and_the_setting_ends_with_it(settings: Any, limit: int) -> None:
    settings.API_RATE_LIMIT_PER_MINUTE = limit
    made = api_key_create(firm=FirmFactory(), name="stamp")
    before = _synchronous_commit()
    with CaptureQueriesContext(db_connection) as captured:
        response = Client(HTTP_AUTHORIZATION=f"Bearer {made.key}").get("/api/v1/connections")
    assert response.status_code == 200
    sql = [q["sql"] for q in captured.captured_queries]
    start = sql.index(ASYNC)
    assert sql[start - 1] == "BEGIN"
    end = sql.index("COMMIT", start)
    # Only the key's own count and stamp (one UPDATE, or two when a new window opens) go without waiting.
    assert sql[start + 1 : end]
    assert all(statement.startswith('UPDATE "api_apikey"') for statement in sql[start + 1 : end])
    assert sql.count(ASYNC) == 1
    # SET LOCAL lasts one transaction: the connection's later commits (the audit trail's) wait as before.
    assert _synchronous_commit() == before
    stamped = ApiKey.objects.get(pk=made.api_key.pk)
    assert stamped.last_used_at is not None
    assert stamped.rate_count == (1 if limit else 0)


def test_inside_a_transaction_the_stamp_is_left_to_it(settings: Any, rf: Any) -> None:
    settings.API_RATE_LIMIT_PER_MINUTE = 0
    made = api_key_create(firm=FirmFactory(), name="stamp")
    with transaction.atomic(), CaptureQueriesContext(db_connection) as captured:
        assert read_key.authenticate(rf.get("/api/v1/connections"), made.key) is not None
        assert _synchronous_commit() == "on"
    assert ASYNC not in [q["sql"] for q in captured.captured_queries]
