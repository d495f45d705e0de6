"""How the portal asks PostgreSQL to plan its queries (set per connection, leaving the server's own settings alone)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

# What the planner takes reading a page out of order to cost, against 1 for the next page in sequence.
# PostgreSQL's default of 4 models a spinning disk; the portal's working set (households, assignments,
# the connections' indexes) sits in memory or on SSD, for which PostgreSQL's documentation suggests 1.1.
# At 4, an adviser's dashboard in a large firm reads every household of the firm rather than the
# adviser's own: a hash join over the whole firm instead of a look-up per assigned household.
DEFAULT_RANDOM_PAGE_COST = "1.1"


class PlannerSettingError(ImproperlyConfigured):
    pass


def planner_options(options: dict[str, Any], *, random_page_cost: str) -> dict[str, Any]:
    """``options`` (a PostgreSQL ``DATABASES`` entry's) with ``random_page_cost`` sent at connection time.

    Empty leaves the server's setting alone (a pooler that refuses startup options: set it on the
    database instead, ``ALTER DATABASE ... SET random_page_cost``). Startup options already given
    (``?options=`` in ``DATABASE_URL``) are kept, and one that sets the cost itself wins.
    """
    value = random_page_cost.strip()
    if not value:
        return dict(options)
    try:
        cost = float(value)
    except ValueError:
        raise PlannerSettingError(f"DATABASE_RANDOM_PAGE_COST must be a number, not {value!r}") from None
    if not 0 < cost <= 100:
        raise PlannerSettingError(f"DATABASE_RANDOM_PAGE_COST must be above 0 and at most 100, not {value!r}")
    given = str(options.get("options", "")).strip()
    if "random_page_cost" in given:
        return dict(options)
    return {**options, "options": f"{given} -c random_page_cost={cost:g}".strip()}
