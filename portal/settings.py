"""Settings for the adviser connections portal.

Twelve-factor: everything comes from the environment (django-environ). With no
environment at all the project runs for development: SQLite in WAL mode and
Celery's filesystem broker under ``var/``, the sandbox on, and a development
secret key and encryption key generated on first run into ``var/``.

With ``DEBUG`` off (production) it refuses to start unless ``SECRET_KEY``,
``TOKEN_ENCRYPTION_KEYS``, ``ALLOWED_HOSTS`` and ``DATABASE_URL`` are set.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# An optional .env file beside manage.py, for local overrides; never committed.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG: bool = env.bool("DEBUG", default=True)
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))

PRODUCTION_REQUIRED = ("SECRET_KEY", "TOKEN_ENCRYPTION_KEYS", "ALLOWED_HOSTS", "DATABASE_URL")


def _require_production_settings() -> None:
    """Refuse to start in production without each secret, naming what is missing."""
    missing = [name for name in PRODUCTION_REQUIRED if not os.environ.get(name, "").strip()]
    if missing:
        raise ImproperlyConfigured(
            "DEBUG is off (production) and these required environment variables are not set: "
            + ", ".join(missing)
            + ". Set them, or set DEBUG=true for local development."
        )


def _development_secret(filename: str, make: Callable[[], str]) -> str:
    """Read a development-only secret from var/, generating it on first run.

    These files live in the git-ignored var/ folder, so no secret is ever in the
    repository and each checkout gets its own.
    """
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / filename
    if not path.exists():
        # O_EXCL: two processes starting together (web + worker) never overwrite
        # each other's freshly generated key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(make())
    value = path.read_text().strip()
    if not value:
        raise ImproperlyConfigured(f"{path} is empty; delete it to regenerate a development key.")
    return value


if not DEBUG:
    _require_production_settings()

SECRET_KEY: str = env.str("SECRET_KEY", default="") or _development_secret(
    "dev_secret_key", lambda: secrets.token_urlsafe(50)
)

# Comma-separated Fernet keys, newest first. The first key encrypts; every key
# decrypts, so a new key can be prepended, `rotate_encryption_keys` run, and the
# old key removed afterwards.
TOKEN_ENCRYPTION_KEYS: list[str] = env.list("TOKEN_ENCRYPTION_KEYS", default=[]) or [
    _development_secret("dev_encryption_key", lambda: Fernet.generate_key().decode())
]

ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Public base URL of the portal, used to build absolute links in emails and the
# redirect URIs registered with providers.
PORTAL_BASE_URL: str = env.str("PORTAL_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")

SANDBOX_ENABLED: bool = env.bool("SANDBOX_ENABLED", default=DEBUG)
# When set, every call to the sandbox's control API must carry it in the
# X-Sandbox-Control-Token header: here, where the sandbox is mounted in the
# portal, and in the separate sandbox server, whose settings start from these.
SANDBOX_CONTROL_TOKEN: str = env.str("SANDBOX_CONTROL_TOKEN", default="")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_celery_beat",
    "django_htmx",
    "csp",
    "axes",
    "connections",
    # django-ninja as an app: its Swagger UI template and assets come from
    # static files here, never from a CDN (CSP script-src 'self').
    "ninja",
    "api",
]
if SANDBOX_ENABLED:
    INSTALLED_APPS.append("sandbox")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    # Axes must be last: it inspects the outcome of authentication.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # WAL lets the web process read while a worker writes; IMMEDIATE
            # takes the write lock up front so concurrent writers queue instead
            # of failing with "database is locked" mid-transaction.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# django-axes: throttle repeated failed logins per username and address.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.25)  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False  # no banner on every process start
AXES_LOCKOUT_TEMPLATE = "registration/lockout.html"
AXES_SENSITIVE_PARAMETERS = ["password", "password1", "password2", "client_secret", "offline_token"]

# --- Internationalisation -----------------------------------------------------
LANGUAGE_CODE = "en-gb"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files -------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Email --------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Connections portal <portal@localhost>")

# --- Celery -------------------------------------------------------------------
CELERY_BROKER_URL: str = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "celery"
    for sub in ("queue", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # One folder for both directions: producers write where consumers read.
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        "control_folder": str(_broker_dir / "control"),
    }
CELERY_TASK_ALWAYS_EAGER: bool = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

# Outbound rate limit per provider app, shared by every worker
# (connections.throttling): a token bucket in Redis when a URL is set,
# otherwise in the ProviderApp row. Lifecycle tunables (LIFECYCLE_*,
# BREAKER_*) have defaults in connections/lifecycle.py and throttling.py.
RATE_LIMIT_REDIS_URL: str = env.str("RATE_LIMIT_REDIS_URL", default="") or env.str("REDIS_URL", default="")

# --- Sandbox and providers ----------------------------------------------------
# Where provider clients reach the sandbox when it runs inside the portal. A
# separate sandbox server (`manage.py run_sandbox`) sets this to its own URL.
SANDBOX_BASE_URL: str = env.str("SANDBOX_BASE_URL", default=f"{PORTAL_BASE_URL}/sandbox").rstrip("/")
PROVIDER_CONNECT_TIMEOUT: float = env.float("PROVIDER_CONNECT_TIMEOUT", default=3.05)
PROVIDER_READ_TIMEOUT: float = env.float("PROVIDER_READ_TIMEOUT", default=10.0)

# --- API and webhooks (api/conf.py has the rest, with their defaults) ---------
# Webhook URLs must be https:// and resolve to public addresses only, unless
# these say otherwise (development and the test suite deliver to local receivers).
WEBHOOK_REQUIRE_HTTPS: bool = env.bool("WEBHOOK_REQUIRE_HTTPS", default=not DEBUG)
WEBHOOK_ALLOW_PRIVATE_ADDRESSES: bool = env.bool("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", default=DEBUG)
API_RATE_LIMIT_PER_MINUTE: int = env.int("API_RATE_LIMIT_PER_MINUTE", default=600)

# --- Security -----------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
# Lax, not Strict: the provider's redirect back to our callback is a top-level
# cross-site navigation and must carry the session so the pending request can
# be bound to the user who started it.
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# Browser-facing provider hosts that a connect form's redirect may lead to.
PROVIDER_FORM_ACTION_HOSTS: list[str] = env.list(
    "PROVIDER_FORM_ACTION_HOSTS",
    default=["https://api.turnqey.xyz", "https://sandbox.turnqey.xyz"],
)

# django-csp 4: no inline script anywhere; htmx is served as a static file.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        # A connect form posts here and is redirected to the provider's
        # authorize page; browsers apply form-action to that redirect too.
        "form-action": ["'self'", *PROVIDER_FORM_ACTION_HOSTS],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}

# --- Logging ------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        # Masks anything that looks like a bearer token, a Fernet token or a
        # secret-named field before a record reaches any handler.
        "redact_secrets": {"()": "connections.logging.RedactSecretsFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django configures its own handlers on these two loggers first
        # (django.utils.log.DEFAULT_LOGGING); clearing them sends every record
        # through the root's filtered handler instead of an unfiltered one.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}
