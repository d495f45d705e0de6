"""Figures, the machine they came from, the printed table and ``bench/results.json``."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_PATH = Path(__file__).resolve().parent / "results.json"


def _number_text(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1 or value == 0:
            return f"{value:.2f}".rstrip("0").rstrip(".")
        return f"{value:.3g}"
    return f"{value:,}"


@dataclass
class Figure:
    """One measured value. ``target`` is plain words; ``passed`` is None for context-only figures.

    A compared figure (:meth:`Results.compare`) also carries its ``floor`` (the
    least work that gives the same answer) and its ``peer`` (what one would use
    instead), both measured interleaved with it in the same run, and the ratios:
    ``vs_floor`` is value / floor, ``vs_peer`` is peer / value (how many times
    better than the peer, for a time: faster). ``phase`` names the phase that
    measured it and ``disturbed`` says whether the machine's load average was
    above its core count meanwhile (see ``bench.run``).
    """

    name: str
    value: float | int | str | None
    unit: str = ""
    target: str | None = None
    passed: bool | None = None
    note: str = ""
    floor: float | int | None = None
    peer: float | int | None = None
    vs_floor: float | None = None
    vs_peer: float | None = None
    phase: str = ""
    disturbed: bool | None = None

    def value_text(self) -> str:
        if self.value is None:
            return "n/a"
        text = self.value if isinstance(self.value, str) else _number_text(self.value)
        return f"{text} {self.unit}".strip()

    def floor_text(self) -> str:
        return "" if self.floor is None else f"{_number_text(self.floor)} {self.unit}".strip()

    def peer_text(self) -> str:
        return "" if self.peer is None else f"{_number_text(self.peer)} {self.unit}".strip()

    def ratio_text(self) -> str:
        parts = []
        if self.vs_floor is not None:
            parts.append(f"{self.vs_floor:.2f}x floor")
        if self.vs_peer is not None:
            parts.append(f"peer {self.vs_peer:.1f}x")
        return "; ".join(parts)


@dataclass
class Results:
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    # Per phase: its seconds, the machine's load meanwhile, whether it was disturbed and repeated.
    phases: dict[str, Any] = field(default_factory=dict)
    current_phase: str = ""

    def add(self, name: str, value: Any, unit: str = "", *, target: str | None = None, passed: bool | None = None,
            note: str = "", **compared: Any) -> Figure:
        figure = Figure(name=name, value=value, unit=unit, target=target, passed=passed, note=note,
                        phase=self.current_phase, **compared)
        self.figures = [f for f in self.figures if f.name != name] + [figure]
        return figure

    def check(self, name: str, value: Any, unit: str, *, target: str, ok: bool | None, note: str = "") -> Figure:
        """A figure with a target; ``ok`` None when the value could not be measured (counts as a miss)."""
        return self.add(name, value, unit, target=target, passed=bool(ok) if ok is not None else False, note=note)

    def compare(
        self,
        name: str,
        value: float | None,
        unit: str,
        *,
        floor: float | None = None,
        peer: float | None = None,
        max_vs_floor: float | None = None,
        min_vs_floor: float | None = None,
        min_vs_peer: float | None = None,
        note: str = "",
        digits: int = 1,
    ) -> Figure:
        """A figure beside its floor and/or peer, with the ratio targets it must meet.

        ``max_vs_floor``: value / floor at most this (a time within N times the
        least work); ``min_vs_floor``: value / floor at least this (a rate that
        reaches this fraction of the ceiling); ``min_vs_peer``: peer / value at
        least this (N times faster than the peer). A ratio that cannot be taken
        (a missing value) is a miss.
        """
        vs_floor = value / floor if value is not None and floor else None
        vs_peer = peer / value if value and peer is not None else None
        targets, ok = [], True
        if max_vs_floor is not None:
            targets.append(f"<= {max_vs_floor:g}x floor")
            ok = ok and vs_floor is not None and vs_floor <= max_vs_floor
        if min_vs_floor is not None:
            targets.append(f">= {min_vs_floor:g}x floor")
            ok = ok and vs_floor is not None and vs_floor >= min_vs_floor
        if min_vs_peer is not None:
            targets.append(f"peer >= {min_vs_peer:g}x")
            ok = ok and vs_peer is not None and vs_peer >= min_vs_peer
        return self.add(
            name, round(value, digits) if value is not None else None, unit,
            target="; ".join(targets) or None, passed=ok if targets else None, note=note,
            floor=round(floor, digits + 1) if floor is not None else None,
            peer=round(peer, digits) if peer is not None else None,
            vs_floor=round(vs_floor, 2) if vs_floor is not None else None,
            vs_peer=round(vs_peer, 2) if vs_peer is not None else None,
        )

    def phase_marked(self, phase: str, *, disturbed: bool) -> None:
        for figure in self.figures:
            if figure.phase == phase:
                figure.disturbed = disturbed

    @property
    def targets_missed(self) -> list[Figure]:
        return [f for f in self.figures if f.passed is False]

    def table(self) -> str:
        header = ("figure", "value", "floor", "peer", "ratio", "target", "pass", "load")
        rows = [header]
        for f in self.figures:
            mark = "" if f.passed is None else ("yes" if f.passed else "NO")
            load = "disturbed" if f.disturbed else ""
            rows.append((f.name, f.value_text(), f.floor_text(), f.peer_text(), f.ratio_text(), f.target or "",
                         mark, load))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = []
        for i, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def write(self, *, machine: dict[str, Any], run: dict[str, Any], path: Path = RESULTS_PATH) -> Path:
        payload = {
            "machine": machine,
            "run": run,
            "phases": self.phases,
            "figures": {
                f.name: {
                    "value": f.value, "unit": f.unit, "target": f.target, "pass": f.passed, "note": f.note,
                    **({"floor": f.floor} if f.floor is not None else {}),
                    **({"peer": f.peer} if f.peer is not None else {}),
                    **({"vs_floor": f.vs_floor} if f.vs_floor is not None else {}),
                    **({"vs_peer": f.vs_peer} if f.vs_peer is not None else {}),
                    "phase": f.phase, "disturbed": f.disturbed,
                }
                for f in self.figures
            },
            "errors": self.errors,
            "details": self.details,
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        tmp.replace(path)
        return path


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_total_mb() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return 0


def machine_info() -> dict[str, Any]:
    """Cores, memory, CPU model, Python, PostgreSQL and Redis versions, date; call after Django is set up."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    try:
        import redis

        redis_version = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).info("server").get("redis_version", "")
    except Exception:
        redis_version = ""
    return {
        "cores": os.cpu_count(),
        "memory_mb": _memory_total_mb(),
        "cpu_model": _cpu_model(),
        "python": sys.version.split()[0],
        "postgresql": pg_version,
        "redis": redis_version,
        "os": f"{platform.system()} {platform.release()}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def as_dict(obj: Any) -> Any:
    return asdict(obj)
