"""Settings for the adviser connections portal.

Twelve-factor: everything comes from the environment (django-environ). With no
environment at all the project runs for development: SQLite in WAL mode and
Celery's filesystem broker under ``var/``, the sandbox on, and a development
secret key and encryption key generated on first run into ``var/``.

With ``DEBUG`` off (production) it refuses to start unless ``SECRET_KEY``,
``TOKEN_ENCRYPTION_KEYS``, ``ALLOWED_HOSTS``, ``DATABASE_URL`` and a mail
backend that really sends (``EMAIL_URL`` or ``EMAIL_BACKEND``) are set.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from portal.database import DEFAULT_RANDOM_PAGE_COST, planner_options
from portal.email_url import EmailUrlError, email_settings_from_url

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# An optional .env file beside manage.py, for local overrides; never committed.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG: bool = env.bool("DEBUG", default=True)
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))

PRODUCTION_REQUIRED = ("SECRET_KEY", "TOKEN_ENCRYPTION_KEYS", "ALLOWED_HOSTS", "DATABASE_URL")


# Either of these says where mail goes; production needs one (see "Email" below).
EMAIL_SETTINGS = ("EMAIL_URL", "EMAIL_BACKEND")
# Backends that never deliver: they print mail (password-reset and client links
# included) to the server's output, write it to disk, keep it in memory or drop it.
EMAIL_BACKENDS_NOT_SENT = {
    "django.core.mail.backends.console.EmailBackend": "prints every email to the server's output",
    "django.core.mail.backends.filebased.EmailBackend": "writes every email to files on the server",
    "django.core.mail.backends.locmem.EmailBackend": "keeps every email in memory and sends none",
    "django.core.mail.backends.dummy.EmailBackend": "drops every email",
    "anymail.backends.console.EmailBackend": "prints every email to the server's output",
    "anymail.backends.test.EmailBackend": "keeps every email in memory and sends none",
    "portal.outbox.OutboxEmailBackend": "keeps every email in files on the server (the development outbox)",
}


def _require_production_settings() -> None:
    """Refuse to start in production without each secret, naming what is missing."""
    missing = [name for name in PRODUCTION_REQUIRED if not os.environ.get(name, "").strip()]
    if not any(os.environ.get(name, "").strip() for name in EMAIL_SETTINGS):
        # Without it mail would go to the console: reset and client links in the server's log.
        missing.append("EMAIL_URL")
    if missing:
        raise ImproperlyConfigured(
            "DEBUG is off (production) and these required environment variables are not set: "
            + ", ".join(missing)
            + ". Set them, or set DEBUG=true for local development."
            + (
                " EMAIL_URL is a mail server (smtp+tls://user:password@host:587); EMAIL_BACKEND with "
                "ANYMAIL_* settings may name a django-anymail backend instead."
                if "EMAIL_URL" in missing
                else ""
            )
        )


def _refuse_email_that_is_not_sent(backend: str) -> None:
    """Production mail must leave the server: a backend that only prints, files or drops it is refused."""
    what = EMAIL_BACKENDS_NOT_SENT.get(backend)
    if what is not None:
        source = "EMAIL_BACKEND" if os.environ.get("EMAIL_BACKEND", "").strip() else "EMAIL_URL"
        raise ImproperlyConfigured(
            f"DEBUG is off (production) and {source} selects {backend}, which {what}: password-reset and "
            f"client links would end up there instead of in the recipient's inbox. Set {source} to a mail "
            "server (EMAIL_URL=smtp+tls://user:password@host:587) or a django-anymail backend."
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
# redirect URIs registered with providers. In development it follows PORT (the
# port `make run` and the Procfile's web process listen on; 8000 by default).
PORT: int = env.int("PORT", default=8000)
PORTAL_BASE_URL: str = env.str("PORTAL_BASE_URL", default=f"http://127.0.0.1:{PORT}").rstrip("/")

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
    "anymail",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "connections",
    "mfa",
    "reports",
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
    # request.user.is_verified(): whether this session passed its second factor.
    "django_otp.middleware.OTPMiddleware",
    # Who and from which address, for audit rows written by signal receivers.
    "reports.middleware.AuditContextMiddleware",
    # A signed-in user with a second factor still to give (or to set up) goes nowhere else.
    "mfa.middleware.SecondFactorMiddleware",
    # The signed-in user's own time zone (their digest settings) for every date the request renders;
    # after the second step, whose membership query brings the zone along.
    "connections.middleware.UserTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "portal.errors.MethodNotAllowedPageMiddleware",
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
                "portal.outbox.outbox_context",
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
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The planner's price of reading out of order, for where the portal's data lives (portal.database).
    DATABASES["default"]["OPTIONS"] = planner_options(
        DATABASES["default"].get("OPTIONS", {}),
        random_page_cost=env.str("DATABASE_RANDOM_PAGE_COST", default=DEFAULT_RANDOM_PAGE_COST),
    )

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

# How many reverse proxies in front of the portal append to X-Forwarded-For.
# 0 (the default): the client's address is REMOTE_ADDR and the header is
# ignored, since anyone can send it. N: the address N from the right in the
# header, the one the outermost trusted proxy saw (connections.addresses).
TRUSTED_PROXY_COUNT: int = env.int("TRUSTED_PROXY_COUNT", default=0)

# django-axes: throttle repeated failed logins per username *and* address, so
# one address failing against one username never locks another adviser out.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.25)  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "connections.addresses.client_address"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False  # no banner on every process start
AXES_LOCKOUT_TEMPLATE = "registration/lockout.html"
AXES_SENSITIVE_PARAMETERS = ["password", "password1", "password2", "client_secret", "offline_token"]

# Limits on what one person may try (connections.attempts), shared by every
# process: in Redis when a URL is set, otherwise in the database.
ATTEMPT_LIMIT_REDIS_URL: str = env.str("ATTEMPT_LIMIT_REDIS_URL", default="") or env.str("REDIS_URL", default="")
# Wrong credentials typed into a client link before the link locks.
CLIENT_LINK_CREDENTIAL_ATTEMPTS: int = env.int("CLIENT_LINK_CREDENTIAL_ATTEMPTS", default=5)
# Wrong credentials per signed-in user, and per client address (higher: an
# office's advisers may share one address), in a rolling window.
CREDENTIAL_FAILURES_PER_ADDRESS: int = env.int("CREDENTIAL_FAILURES_PER_ADDRESS", default=20)
CREDENTIAL_FAILURES_PER_USER: int = env.int("CREDENTIAL_FAILURES_PER_USER", default=10)
CREDENTIAL_FAILURE_WINDOW_SECONDS: int = env.int("CREDENTIAL_FAILURE_WINDOW_SECONDS", default=15 * 60)
# Password reset requests per address and per typed email, in a rolling window.
PASSWORD_RESETS_PER_ADDRESS: int = env.int("PASSWORD_RESETS_PER_ADDRESS", default=5)
PASSWORD_RESETS_PER_EMAIL: int = env.int("PASSWORD_RESETS_PER_EMAIL", default=3)
PASSWORD_RESET_WINDOW_SECONDS: int = env.int("PASSWORD_RESET_WINDOW_SECONDS", default=60 * 60)
# What one adviser may spend of the provider budget every firm shares.
CHECK_NOW_PER_MINUTE: int = env.int("CHECK_NOW_PER_MINUTE", default=10)
CLIENT_LINK_SENDS_PER_HOUR: int = env.int("CLIENT_LINK_SENDS_PER_HOUR", default=20)
# --- Second factor (django-otp) ------------------------------------------------
# Staff (Django admin users) always need a second factor in production; in
# development the demo admin can sign in with a password alone.
MFA_REQUIRED_FOR_STAFF: bool = env.bool("MFA_REQUIRED_FOR_STAFF", default=not DEBUG)
# The issuer shown in authenticator apps beside the user name.
OTP_TOTP_ISSUER: str = env.str("OTP_TOTP_ISSUER", default="Adviser portal")
# A wrong code makes the next try wait 1, 2, 4, 8 ... seconds (django-otp's
# throttling, per device, reset by a right code); on top of it, mfa.lockout
# refuses every code for AXES_COOLOFF_TIME after AXES_FAILURE_LIMIT wrong ones.
OTP_TOTP_THROTTLE_FACTOR = 1
OTP_STATIC_THROTTLE_FACTOR = 1

# Models of other apps whose every change goes into the audit trail (label ->
# words), when their app is installed: the integrations API's keys and webhook
# endpoints. Only which fields changed is recorded, never their values.
AUDIT_WATCHED_MODELS: dict[str, str] = {"api.ApiKey": "API key", "api.WebhookEndpoint": "webhook endpoint"}

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
# Two ways to say where mail goes. EMAIL_URL (portal.email_url): a mail server
# in django-environ's schemes (smtp://, smtp+tls://, smtps://, smtp+ssl://,
# console://), or an ESP through django-anymail, anymail+<esp>://<credential>@
# with its other settings as query parameters
# (anymail+mailgun://API_KEY@?sender_domain=mg.example.com). Or EMAIL_BACKEND
# naming a backend class ("anymail.backends.postmark.EmailBackend"). ANYMAIL_*
# variables add to (and win over) what EMAIL_URL gave: ANYMAIL_POSTMARK_SERVER_TOKEN=...
# is ANYMAIL["POSTMARK_SERVER_TOKEN"]. EMAIL_BACKEND wins when both are set.
# Development without either keeps every email in the outbox (VAR_DIR/outbox),
# listed at /dev/outbox/ (portal.outbox).
try:
    EMAIL_CONFIG = email_settings_from_url(env.str("EMAIL_URL", default="") or "consolemail://")
except EmailUrlError as exc:
    raise ImproperlyConfigured(str(exc)) from None
_ANYMAIL_FROM_URL: dict[str, Any] = EMAIL_CONFIG.pop("ANYMAIL", {})
vars().update(EMAIL_CONFIG)
EMAIL_BACKEND: str = env.str("EMAIL_BACKEND", default="").strip() or str(EMAIL_CONFIG["EMAIL_BACKEND"])
if DEBUG and not any(os.environ.get(name, "").strip() for name in EMAIL_SETTINGS):
    EMAIL_BACKEND = "portal.outbox.OutboxEmailBackend"
ANYMAIL = {
    **_ANYMAIL_FROM_URL,
    **{name.removeprefix("ANYMAIL_"): value for name, value in os.environ.items() if name.startswith("ANYMAIL_")},
}
if not DEBUG:
    _refuse_email_that_is_not_sent(EMAIL_BACKEND)
# The ESP's delivery reports (anymail's tracking webhooks, /anymail/<esp>/tracking/) must carry HTTP basic
# auth "user:password" from ANYMAIL_WEBHOOK_SECRET. Without one the webhooks are not mounted at all (anymail
# would accept unauthenticated posts); development generates one into var/.
if DEBUG and not ANYMAIL.get("WEBHOOK_SECRET"):
    ANYMAIL["WEBHOOK_SECRET"] = _development_secret(
        "dev_anymail_webhook_secret", lambda: f"anymail:{secrets.token_urlsafe(24)}"
    )
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
# otherwise in the ProviderApp row. Breaker tunables (BREAKER_*) have their
# defaults in connections/throttling.py.
RATE_LIMIT_REDIS_URL: str = env.str("RATE_LIMIT_REDIS_URL", default="") or env.str("REDIS_URL", default="")
# Lifecycle tunables (connections.lifecycle.rules.Tunables: probe interval,
# backoff, leases, warning windows...): any LIFECYCLE_<NAME> variable in the
# environment overrides that default, as a number. `manage.py check` refuses a
# name that is not a tunable or a value that is not a number (connections.checks).
vars().update({name: value for name, value in os.environ.items() if name.startswith("LIFECYCLE_")})

# --- Reconnect requests and notifications --------------------------------------
# Defaults; a firm's FirmNotificationPolicy (admin) overrides the last three for that firm.
RECONNECT_REQUEST_MAX_AGE_DAYS: float = env.float("RECONNECT_REQUEST_MAX_AGE_DAYS", default=7)
RECONNECT_REMINDER_DAYS: list[float] = [float(d) for d in env.list("RECONNECT_REMINDER_DAYS", default=["2", "5"])]
RECONNECT_REQUESTS_PER_FIRM_PER_HOUR: int = env.int("RECONNECT_REQUESTS_PER_FIRM_PER_HOUR", default=100)
# A recovery is announced once it has held this long (or for two successful checks).
NOTIFICATIONS_RECOVERY_HOLD_SECONDS: float = env.float("NOTIFICATIONS_RECOVERY_HOLD_SECONDS", default=3600)

# --- Sandbox and providers ----------------------------------------------------
# Where provider clients reach the sandbox when it runs inside the portal. A
# separate sandbox server (`manage.py run_sandbox`) sets this to its own URL.
SANDBOX_BASE_URL: str = env.str("SANDBOX_BASE_URL", default=f"{PORTAL_BASE_URL}/sandbox").rstrip("/")
# The sandbox's sign-in pages and /sandbox/_hints/ list the simulated people who can sign in (development
# only), naming a password only where it is one of these and it matches (the demo logins' password).
SANDBOX_SIGN_IN_HINTS: bool = env.bool("SANDBOX_SIGN_IN_HINTS", default=DEBUG)
SANDBOX_HINT_PASSWORDS: list[str] = ["demo-password-dev-only"] if DEBUG else []
PROVIDER_CONNECT_TIMEOUT: float = env.float("PROVIDER_CONNECT_TIMEOUT", default=3.05)
PROVIDER_READ_TIMEOUT: float = env.float("PROVIDER_READ_TIMEOUT", default=10.0)
# The whole of one provider call, however slowly the reply trickles in (the
# read timeout bounds each read, not the call); connections.providers.http.
PROVIDER_TOTAL_TIMEOUT: float = env.float("PROVIDER_TOTAL_TIMEOUT", default=30.0)

# The hosts each provider's apps may call, and send browsers to, per
# environment (connections.providers.endpoints): the ones the provider
# documents, declared by its client (documented_base_urls). Each list is
# replaced from the environment when PROVIDER_HOSTS_<PROVIDER>_<ENVIRONMENT>
# is set (comma-separated `host` or `host:port`): Bloquo hands out its
# production host on request (PROVIDER_HOSTS_BLOQUO_PRODUCTION), and Dapi's
# docs name no host at all. Only those replacements are read here (the
# clients are not importable from settings); endpoints.allowed_hosts takes a
# pair listed here over the declared one.
# The sandbox's own host (SANDBOX_BASE_URL) is allowed while SANDBOX_ENABLED is on.
_PROVIDER_HOSTS_PREFIX = "PROVIDER_HOSTS_"


def provider_hosts_from_environment() -> dict[str, dict[str, list[str]]]:
    listed: dict[str, dict[str, list[str]]] = {}
    for name in sorted(os.environ):
        provider, _, environment = name.removeprefix(_PROVIDER_HOSTS_PREFIX).rpartition("_")
        if name.startswith(_PROVIDER_HOSTS_PREFIX) and provider and environment:
            listed.setdefault(provider.lower(), {})[environment.lower()] = env.list(name)
    return listed


PROVIDER_HOSTS: dict[str, dict[str, list[str]]] = provider_hosts_from_environment()

# Production's rule for provider URLs: https only and never an internal address
# (loopback, private, link-local, localhost...). Follows DEBUG, not the
# environment, so a deployment cannot switch it off by accident.
PROVIDER_URLS_STRICT: bool = not DEBUG

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
        # WeasyPrint narrates every step of every PDF at INFO.
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
    },
}
