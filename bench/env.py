"""The benchmark's environment, set before Django is imported.

The benchmarks run the portal as production would: ``DEBUG`` off (no query
log, no debug templates), PostgreSQL, a Redis broker and the Redis rate
limiter. Secrets are generated for the run (nothing the world holds outlives
it: every run rebuilds it). Child processes (the sandbox server, the Celery
worker) inherit the same environment, so they share the database, the broker
and the encryption key with the benchmark process.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/portal_bench"
# A database number of its own, purged at the start of each phase that uses it:
# the test suite uses 15, and the benchmark must not empty anybody else's keys.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"


@dataclass(frozen=True)
class BenchEnv:
    database_url: str
    redis_url: str


def _is_postgres(url: str) -> bool:
    return urlsplit(url).scheme in {"postgres", "postgresql", "pgsql", "postgis"}


def database_ensure(url: str) -> None:
    """Create the database named in ``url`` when it does not exist yet (connecting to ``postgres``)."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit((parts.scheme.replace("postgis", "postgres"), parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(admin.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not found:
            conn.execute(f'CREATE DATABASE "{name}"')


def bench_env_setup() -> BenchEnv:
    """Point this process (and its children) at the benchmark's PostgreSQL and Redis, production-style."""
    database_url = os.environ.get("DATABASE_URL", "")
    if not _is_postgres(database_url):
        database_url = DEFAULT_DATABASE_URL
    database_ensure(database_url)
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    from cryptography.fernet import Fernet

    values = {
        "DATABASE_URL": database_url,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "SECURE_SSL_REDIRECT": "false",
        "SANDBOX_ENABLED": "true",
        "CELERY_BROKER_URL": redis_url,
        "RATE_LIMIT_REDIS_URL": redis_url,
        # Production refuses a backend that drops mail; nothing in the benchmark
        # sends any, and if something did, the closed port would say so.
        "EMAIL_URL": "smtp://127.0.0.1:9",
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        # The benchmark's own output is its progress lines; the portal's INFO logs would drown them.
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(values)
    return BenchEnv(database_url=database_url, redis_url=redis_url)
