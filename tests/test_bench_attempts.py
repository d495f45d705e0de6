"""The benchmark keeps the figures of the attempt the machine disturbed less (``bench.run.quieter_attempt``)."""

from __future__ import annotations

from typing import Any

from bench.run import quieter_attempt


def _attempt(*, load: float, others: float) -> dict[str, Any]:
    return {"load_average_mean": load, "other_programs_cores": others}


def test_the_attempt_in_which_other_programs_used_less_cpu_is_kept_whatever_its_own_threads_did_to_the_load() -> None:
    # The check phase's worker threads keep the load average far above two cores in every attempt.
    assert quieter_attempt([_attempt(load=13.8, others=0.21), _attempt(load=15.0, others=0.05)]) == 1
    assert quieter_attempt([_attempt(load=15.0, others=0.05), _attempt(load=13.8, others=0.21)]) == 0


def test_other_programs_within_the_margin_leave_the_choice_to_the_lower_load_average() -> None:
    assert quieter_attempt([_attempt(load=3.5, others=0.02), _attempt(load=2.9, others=0.03)]) == 1
    assert quieter_attempt([_attempt(load=2.9, others=0.03), _attempt(load=3.5, others=0.02)]) == 0
