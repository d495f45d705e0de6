"""Signals that apps built on ``connections`` react to; ``connections`` never knows who listens.

``events_committed``: ConnectionEvent rows were written and their transaction
has committed. ``ConnectionEvent`` is the outbox (docs/architecture.md, "The outbox"): the lifecycle
writes history in the same transaction as the change it records, and what
reacts (webhooks, say) reads that history afterwards. This signal only says
"there is something new to read", so a reaction can run at once instead of
waiting for its next periodic pass; a reaction must still read the rows
themselves, and must not rely on the signal alone (a process can die between
the commit and the signal).

Sent once per ``save()`` of a new event and once per ``bulk_create``, with
``events`` (the saved instances), through ``send_robust`` in a robust
``on_commit`` callback: a failing receiver is logged and never undoes, delays
or breaks the write that announced it.
"""

from __future__ import annotations

from django.dispatch import Signal

events_committed = Signal()
