"""Firm oversight: freshness snapshots and trends, provider health, exports (CSV, PDF), the audit trail
and the access review.

Reads what :mod:`connections` writes (through its selectors and its rows) and never the other way
round: connections import nothing from here. What people do inside connections reaches the audit
trail through Django's own signals and the ``ConnectionEvent`` outbox (see :mod:`reports.receivers`).
"""
