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


@dataclass
class Figure:
    """One measured value. ``target`` is plain words; ``passed`` is None for context-only figures."""

    name: str
    value: float | int | str | None
    unit: str = ""
    target: str | None = None
    passed: bool | None = None
    note: str = ""

    def value_text(self) -> str:
        if self.value is None:
            return "n/a"
        if isinstance(self.value, float):
            if abs(self.value) >= 100:
                text = f"{self.value:,.0f}"
            elif abs(self.value) >= 1 or self.value == 0:
                text = f"{self.value:.2f}".rstrip("0").rstrip(".")
            else:
                text = f"{self.value:.3g}"
        elif isinstance(self.value, int):
            text = f"{self.value:,}"
        else:
            text = str(self.value)
        return f"{text} {self.unit}".strip()


@dataclass
class Results:
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, value: Any, unit: str = "", *, target: str | None = None, passed: bool | None = None,
            note: str = "") -> Figure:
        figure = Figure(name=name, value=value, unit=unit, target=target, passed=passed, note=note)
        self.figures = [f for f in self.figures if f.name != name] + [figure]
        return figure

    def check(self, name: str, value: Any, unit: str, *, target: str, ok: bool | None, note: str = "") -> Figure:
        """A figure with a target; ``ok`` None when the value could not be measured (counts as a miss)."""
        return self.add(name, value, unit, target=target, passed=bool(ok) if ok is not None else False, note=note)

    @property
    def targets_missed(self) -> list[Figure]:
        return [f for f in self.figures if f.passed is False]

    def table(self) -> str:
        rows = [("figure", "value", "target", "pass")]
        for f in self.figures:
            mark = "" if f.passed is None else ("yes" if f.passed else "NO")
            rows.append((f.name, f.value_text(), f.target or "", mark))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
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
            "figures": {
                f.name: {"value": f.value, "unit": f.unit, "target": f.target, "pass": f.passed, "note": f.note}
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
