"""The portal asks PostgreSQL to price out-of-order reads for memory and SSD, and an adviser's reads follow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection

from connections.models import Firm, Household, Membership
from connections.selectors import household_queryset_for
from portal.database import PlannerSettingError, planner_options

PROJECT_DIR = Path(__file__).resolve().parent.parent


def test_the_cost_is_sent_at_connection_time_beside_the_options_already_given() -> None:
    assert planner_options({}, random_page_cost="1.1") == {"options": "-c random_page_cost=1.1"}
    assert planner_options({"options": "-c statement_timeout=5s", "sslmode": "require"}, random_page_cost="2") == {
        "options": "-c statement_timeout=5s -c random_page_cost=2",
        "sslmode": "require",
    }


def test_an_empty_cost_or_one_given_in_the_url_leaves_the_options_as_they_are() -> None:
    assert planner_options({"sslmode": "require"}, random_page_cost="  ") == {"sslmode": "require"}
    given = {"options": "-c random_page_cost=3"}
    assert planner_options(given, random_page_cost="1.1") == given


@pytest.mark.parametrize("value", ["fast", "0", "-1", "1000"])
def test_a_cost_that_is_not_a_sensible_number_is_refused_by_name(value: str) -> None:
    with pytest.raises(PlannerSettingError, match="DATABASE_RANDOM_PAGE_COST"):
        planner_options({}, random_page_cost=value)


def test_the_portal_refuses_to_start_with_a_cost_it_cannot_read(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        VAR_DIR=str(tmp_path),
        DATABASE_URL="postgres://portal@127.0.0.1:5432/portal",
        DATABASE_RANDOM_PAGE_COST="fast",
    )
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode != 0
    assert "DATABASE_RANDOM_PAGE_COST must be a number, not 'fast'" in result.stderr


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_portals_connections_plan_with_the_lower_cost() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SHOW random_page_cost")
        assert cursor.fetchone() == ("1.1",)


def _household_plan(adviser: User) -> str:
    sql, params = household_queryset_for(user=adviser).values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_advisers_households_in_a_large_firm_are_looked_up_not_the_whole_firm_read() -> None:
    firm = Firm.objects.create(name="Large firm", slug="large-firm")
    adviser = User.objects.create_user("spread-adviser")
    Membership.objects.create(user=adviser, firm=firm, role=Membership.Role.ADVISER)
    households = Household.objects.bulk_create(Household(firm=firm, name=f"Household {n}") for n in range(5000))
    adviser.assigned_households.set(households[::50])  # 100 of them, spread through the firm's
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE connections_household")
        cursor.execute("VACUUM ANALYZE connections_household_advisers")

    assert "Seq Scan on connections_household " not in _household_plan(adviser) + " "
    with connection.cursor() as cursor:
        cursor.execute("SET random_page_cost = 4")  # PostgreSQL's own default
    try:
        assert "Seq Scan on connections_household " in _household_plan(adviser) + " "
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET random_page_cost")
