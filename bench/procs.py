"""The servers a benchmark starts (sandbox, Celery worker), and how their memory is read.

Each child runs in a process group of its own and is stopped by that group's
id (SIGTERM, then SIGKILL after a grace period), so nothing else on the
machine is touched. Memory comes from ``/proc/<pid>/status``: ``VmRSS`` now,
``VmHWM`` the process's own peak.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LOG_DIR = ROOT / "var" / "bench"


def sandbox_control_headers() -> dict[str, str]:
    """The control token header, when ``SANDBOX_CONTROL_TOKEN`` is set (the sandbox child inherits it)."""
    token = os.environ.get("SANDBOX_CONTROL_TOKEN", "")
    return {"X-Sandbox-Control-Token": token} if token else {}


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def free_port(candidates: range) -> int:
    for port in candidates:
        if port_is_free(port):
            return port
    raise RuntimeError(f"No free port in {candidates.start}-{candidates.stop - 1}.")


@dataclass
class Child:
    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM to the child's own process group; SIGKILL if it is still there after ``grace`` seconds."""
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


def _spawn(name: str, argv: list[str]) -> Child:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{name}.log"
    log = open(log_path, "w")  # noqa: SIM115 - handed to the child; closed when the child's output is done
    # The children log at INFO whatever this process does: the worker's "ready." line is read from its log.
    env = {**os.environ, "LOG_LEVEL": "INFO"}
    popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    log.close()
    return Child(name=name, popen=popen, log_path=log_path)


def sandbox_start(*, port: int, workers: int = 2, threads: int = 32) -> Child:
    """``manage.py run_sandbox`` on ``port``; returns once its control API answers."""
    child = _spawn("sandbox", [str(BIN / "python"), "manage.py", "run_sandbox", "--port", str(port),
                               "--workers", str(workers), "--threads", str(threads), "--timeout", "300"])
    url = f"http://127.0.0.1:{port}/sandbox/_control/"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.popen.poll() is not None:
            raise RuntimeError(f"The sandbox server exited:\n{child.log_tail()}")
        try:
            if requests.get(url, headers=sandbox_control_headers(), timeout=2).status_code == 200:
                return child
        except requests.RequestException:
            pass
        time.sleep(0.3)
    child.stop()
    raise RuntimeError(f"The sandbox server did not answer within 60 s:\n{child.log_tail()}")


def procfile_worker_args(procfile: Path = ROOT / "Procfile") -> list[str]:
    """The ``worker`` line of the Procfile, as arguments after ``celery`` (``-A portal worker ...``)."""
    for line in procfile.read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == "worker":
            argv = shlex.split(command)
            return argv[1:]  # drop the celery executable
    raise RuntimeError("The Procfile has no worker line.")


def worker_start(args: list[str], *, name: str = "worker") -> Child:
    """A Celery worker with ``args`` (as in the Procfile), logging to var/bench/<name>.log; returns once ready."""
    child = _spawn(name, [str(BIN / "celery"), *args, "--without-gossip", "--without-mingle"])
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if child.popen.poll() is not None:
            raise RuntimeError(f"The worker exited:\n{child.log_tail()}")
        if " ready." in child.log_tail(50):
            return child
        time.sleep(0.3)
    child.stop()
    raise RuntimeError(f"The worker did not get ready within 90 s:\n{child.log_tail()}")


# --- Memory -----------------------------------------------------------------------


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (read from /proc/<pid>/task/*/children)."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                try:
                    with open(f"/proc/{current}/task/{task}/children") as handle:
                        stack.extend(int(child) for child in handle.read().split())
                except OSError:
                    continue
        except OSError:
            continue
    return found


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS") / 1024


def hwm_mb(pid: int) -> float:
    return _status_kb(pid, "VmHWM") / 1024


def hwm_reset(pid: int | str = "self") -> bool:
    """Reset a process's VmHWM to its current RSS (Linux ``clear_refs`` 5); False where not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


@dataclass
class TreeMemorySampler:
    """Samples the summed RSS of a process tree every ``interval`` seconds, in a thread.

    ``peak_sampled_mb`` is the largest sum seen; :meth:`peak_hwm_mb` sums
    each process's own VmHWM (an upper bound: the processes need not have
    peaked together).
    """

    pid: int
    interval: float = 0.2
    peak_sampled_mb: float = 0.0
    hwm_by_pid: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TreeMemorySampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        total = 0.0
        for pid in process_tree(self.pid):
            total += rss_mb(pid)
            hwm = hwm_mb(pid)
            if hwm:
                self.hwm_by_pid[pid] = max(self.hwm_by_pid.get(pid, 0.0), hwm)
        self.peak_sampled_mb = max(self.peak_sampled_mb, total)

    def stop(self) -> None:
        self.sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def peak_hwm_mb(self) -> float:
        return sum(self.hwm_by_pid.values())

    @property
    def processes(self) -> int:
        return len(self.hwm_by_pid)


# --- CPU ----------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy since boot (from /proc/stat)."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    # user nice system idle iowait irq softirq steal: everything but idle and iowait is busy.
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / _TICKS


def database_backends() -> list[int]:
    """PostgreSQL server processes serving this database (the portal's, the worker's, the sandbox's)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        return [row[0] for row in cursor.fetchall()]


@dataclass
class CpuMeter:
    """CPU seconds used by groups of processes between :meth:`start` and :meth:`stop`.

    Each group is a function returning its pids. The groups are polled every
    ``interval`` seconds in a thread, so a process that exits in between (a
    database connection closed and reopened) still counts up to its last
    sample; one that appears counts in full. Reads /proc only.
    """

    groups: dict[str, object]
    interval: float = 0.5
    _baseline: dict[int, float] = field(default_factory=dict)
    _last: dict[int, tuple[str, float]] = field(default_factory=dict)
    _machine: float = 0.0
    _started: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _pids(self) -> dict[str, list[int]]:
        return {name: list(find()) for name, find in self.groups.items()}  # type: ignore[operator]

    def _poll(self) -> None:
        for name, pids in self._pids().items():
            for pid in set(pids):
                used = cpu_seconds(pid)
                if used:
                    self._last[pid] = (name, used)

    def start(self) -> CpuMeter:
        self._poll()
        self._baseline = {pid: used for pid, (_, used) in self._last.items()}
        self._machine = machine_busy_seconds()
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):  # a database hiccup must not end the sampling
                self._poll()
        from django.db import connection

        connection.close()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._poll()
        used: dict[str, float] = {name: 0.0 for name in self.groups}
        for pid, (name, seconds) in self._last.items():
            used[name] += max(0.0, seconds - self._baseline.get(pid, 0.0))
        ours = sum(used.values())
        used["wall"] = time.perf_counter() - self._started
        # Everything else the machine ran meanwhile (other programs, other databases' backends).
        used["others"] = max(0.0, machine_busy_seconds() - self._machine - ours)
        return used


def worker_outcomes(log_path: Path) -> dict[str, int]:
    """Check outcomes the worker logged (celery's "Task ... succeeded in ...: <return value>" lines).

    A chunk task returns a count per outcome (``{'ok': 25}``); a single check
    returns its outcome's name. Anything else is ignored.
    """
    import ast
    import re

    pattern = re.compile(r"Task connections\.(check_connections?)\[[^\]]+\] succeeded in [0-9.e-]+s: (.*)$")
    totals: dict[str, int] = {}
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return totals
    for line in lines:
        found = pattern.search(line)
        if not found:
            continue
        try:
            value = ast.literal_eval(found.group(2).strip())
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, dict):
            for outcome, n in value.items():
                totals[str(outcome)] = totals.get(str(outcome), 0) + int(n)
        elif isinstance(value, str):
            totals[value] = totals.get(value, 0) + 1
    return totals


class LoadWatch:
    """The machine's load while a phase is measured: its 1-minute load average, sampled every second
    (start, end, mean, max), and whose CPU the cores spent (the benchmark's processes and the
    PostgreSQL backends serving its database, against everything else the machine ran).

    ``disturbed``: the mean load average was above the core count. The benchmark's own processes
    count in the load average too (a check run keeps a worker, the sandbox server and PostgreSQL
    busy at once), which is why the CPU split is recorded beside it.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._meter: CpuMeter | None = None

    def start(self) -> LoadWatch:
        self.samples = [os.getloadavg()[0]]
        self._meter = CpuMeter({"bench": lambda: process_tree(os.getpid()), "postgres": database_backends},
                               interval=self.interval).start()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.samples.append(os.getloadavg()[0])
        used = self._meter.stop() if self._meter is not None else {"wall": 0.0}
        wall = max(used.get("wall", 0.0), 1e-9)
        cores = os.cpu_count() or 1
        mean = sum(self.samples) / len(self.samples)
        own = (used.get("bench", 0.0) + used.get("postgres", 0.0)) / wall
        return {
            "seconds": round(wall, 1),
            "cores": cores,
            "load_average_start": round(self.samples[0], 2),
            "load_average_end": round(self.samples[-1], 2),
            "load_average_mean": round(mean, 2),
            "load_average_max": round(max(self.samples), 2),
            "bench_cores": round(own, 2),
            "other_programs_cores": round(used.get("others", 0.0) / wall, 2),
            "disturbed": mean > cores,
        }
