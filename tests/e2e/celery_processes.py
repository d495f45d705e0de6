"""Real Celery processes for the end-to-end suite: started, logged to files, and stopped whatever happens.

They share the test's PostgreSQL database (the live server's). Each test
gives them a broker of its own (a Redis database derived from the suite's
``REDIS_URL``, or a filesystem broker in the test's folder), so tests running
at once on different test workers, or suites of two checkouts, never take
each other's tasks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from django.conf import settings

CELERY = str(Path(sys.executable).with_name("celery"))
PROJECT_DIR = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The URL of the database this test (and the live server) runs on."""
    db = settings.DATABASES["default"]
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{credentials}@{host}/{db['NAME']}"


def redis_broker_url() -> str:
    """A Redis database for a broker, beside the one the suite uses (``REDIS_URL``): eight further along."""
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    head, _, number = base.rstrip("/").rpartition("/")
    db = (int(number) + 8) % 16 if number.isdigit() else 9
    return f"{head}/{db}"


def filesystem_broker_options(var_dir: Path) -> dict[str, object]:
    """What portal.settings makes of ``CELERY_BROKER_URL=filesystem://`` under ``VAR_DIR=var_dir``."""
    folder = var_dir / "celery"
    for name in ("queue", "processed", "control"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "store_processed": False,
        "control_folder": str(folder / "control"),
    }


def celery_env(*, broker_url: str, **extra: str) -> dict[str, str]:
    """The environment of a worker or beat: this test's database, keys and sandbox, the given broker, real tasks."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": database_url(),
        "TOKEN_ENCRYPTION_KEYS": ",".join(settings.TOKEN_ENCRYPTION_KEYS),
        "CELERY_BROKER_URL": broker_url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "EMAIL_URL": "dummymail://",
        "LOG_LEVEL": "INFO",
        # The live server's sandbox, which its provider apps may call.
        "SANDBOX_BASE_URL": settings.SANDBOX_BASE_URL,
        **extra,
    }


def worker_args(name: str, *, threads: int) -> list[str]:
    """A worker as the Procfile runs one (the threads pool), quiet about its peers."""
    return [
        *("worker", "--pool", "threads", "-c", str(threads), "-n", f"{name}@%h"),
        *("--without-heartbeat", "--without-gossip", "--without-mingle"),
    ]


@contextmanager
def celery_processes(
    commands: Mapping[str, list[str]], env: Mapping[str, str], logs: Path
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Start one ``celery -A portal <command>`` process per entry, logging to ``logs/<name>.log``.

    On the way out every process still running gets SIGTERM at once (a warm
    shutdown: the worker finishes its task), then SIGKILL if it has not
    exited within 20 seconds.
    """
    started: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, args in commands.items():
            with (logs / f"{name}.log").open("wb") as out:
                started[name] = subprocess.Popen(
                    [CELERY, "-A", "portal", *args],
                    cwd=PROJECT_DIR,
                    env=dict(env),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
        yield started
    finally:
        running = [process for process in started.values() if process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def log_tail(logs: Path, name: str) -> str:
    return (logs / f"{name}.log").read_text(errors="replace")[-3000:]


def broker_purge(broker_url: str) -> None:
    import redis

    redis.Redis.from_url(broker_url, socket_timeout=2).flushdb()
