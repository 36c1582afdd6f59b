"""Holdfast settings: everything comes from the environment, with safe development defaults.

With no configuration at all the embedded default runs: SQLite under ``var/``, a Celery broker
that needs no server (kombu's filesystem transport) and vault storage under ``var/``.
Production sets ``DJANGO_DEBUG=0``, ``SECRET_KEY``, ``DATABASE_URL`` and ``CELERY_BROKER_URL``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, SELF

from portal import schedule

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("HOLDFAST_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


DEBUG = env_bool("DJANGO_DEBUG", True)
_DEV_SECRET = "django-insecure-holdfast-development-only-key-change-me-in-production-0123456789"
SECRET_KEY = os.environ.get("SECRET_KEY", _DEV_SECRET if DEBUG else "")
if not SECRET_KEY:
    raise RuntimeError("SECRET_KEY must be set when DJANGO_DEBUG is off.")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    # The Django admin, read-only for every model (portal/admin.py): it is no back door.
    "portal.apps.ReadOnlyAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "django_filters",
    "rest_framework",
    "knox",  # API tokens stored as digests (SPEC 3.9)
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "pgtrigger",
    "csp",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "portal",
    "guards",
    "vaults",
    "policies",
]

MIDDLEWARE = [
    # First: oversized bodies and NUL characters in paths, queries and headers never go further.
    "portal.middleware.RequestGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "portal.middleware.SessionMiddleware",  # Django's, plus a 503 when the database is down
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "portal.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "portal.middleware.HtmxFeedbackMiddleware",
    "portal.middleware.EntryPointMiddleware",
    # Last, as django-axes asks: it turns a flagged lockout into the lockout response.
    "axes.middleware.AxesMiddleware",
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
                "portal.context_processors.navigation",
            ],
            # label and duration filters on every page without a {% load %}.
            "builtins": ["portal.templatetags.holdfast"],
        },
    }
]

# Least privilege in PostgreSQL (docs/security.md, "Database roles"): web, worker and beat
# connect as DATABASE_URL's role, which cannot alter tables; `migrate` and `db_roles` connect as
# DATABASE_OWNER_URL's role, which owns them, when it is set. Give it to the migration step only.
_DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'holdfast.sqlite3'}")
DATABASE_OWNER_URL = os.environ.get("DATABASE_OWNER_URL", "")
_AS_DATABASE_OWNER = bool(DATABASE_OWNER_URL) and sys.argv[1:2] in (["migrate"], ["db_roles"])
# The application's role that `db_roles` sets up: these variables, else DATABASE_URL's user
# when the owner's URL is the connection.
_app_database: dict[str, object] = (
    dict(dj_database_url.parse(_DATABASE_URL)) if _AS_DATABASE_OWNER else {}
)
HOLDFAST_DB_APP_ROLE = os.environ.get("HOLDFAST_DB_APP_ROLE") or str(_app_database.get("USER", ""))
HOLDFAST_DB_APP_PASSWORD = os.environ.get("HOLDFAST_DB_APP_PASSWORD") or str(
    _app_database.get("PASSWORD", "")
)
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_OWNER_URL if _AS_DATABASE_OWNER else _DATABASE_URL,
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "0")),
        conn_health_checks=True,  # a kept connection the server dropped is replaced, not used
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, beat) share the file: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
IS_POSTGRES = DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out client before any password is checked.
AUTHENTICATION_BACKENDS = [
    "portal.throttle.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Idle expiry: every request pushes the expiry forward, so a session unused for this long ends.
SESSION_COOKIE_AGE = int(os.environ.get("HOLDFAST_SESSION_SECONDS", str(30 * 60)))
SESSION_SAVE_EVERY_REQUEST = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
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

# --- Holdfast ---------------------------------------------------------------------------
HOLDFAST_STORAGE_ROOT = Path(os.environ.get("HOLDFAST_STORAGE_ROOT", VAR_DIR / "storage"))
# The master key that wraps every vault's data key (SPEC 3.11, docs/storage.md "Encryption"):
# created (mode 0600) on first use when missing and no vault needs an older one; never
# replaced. Keep a copy apart from the data and from database backups.
HOLDFAST_KEY_FILE = Path(os.environ.get("HOLDFAST_KEY_FILE", VAR_DIR / "keys" / "master.key"))
# Where master keys come from: a dotted path to a `vaults.storage.crypto.KeyProvider` class
# taking no arguments (a KMS-backed one later); the default reads HOLDFAST_KEY_FILE.
HOLDFAST_KEY_PROVIDER = os.environ.get("HOLDFAST_KEY_PROVIDER", "vaults.keyring.FileKeyProvider")
# Directories that may be protected (colon-separated); empty allows any readable directory
# except Holdfast's own storage and data.
HOLDFAST_SOURCE_ROOTS = [
    Path(p) for p in os.environ.get("HOLDFAST_SOURCE_ROOTS", "").split(":") if p.strip()
]
HOLDFAST_RESTORE_ROOTS = [
    Path(p) for p in os.environ.get("HOLDFAST_RESTORE_ROOTS", str(VAR_DIR / "restores")).split(":")
]
# Hosts (SPEC 3.13): a worker announces HOLDFAST_WORKER_HOST (default the machine's name)
# every HOLDFAST_HOST_BEAT_SECONDS; a job waits HOLDFAST_HOST_WAIT_MINUTES for its offline
# host, then fails (it never runs elsewhere).
HOLDFAST_HOST_BEAT_SECONDS = float(os.environ.get("HOLDFAST_HOST_BEAT_SECONDS", "60"))
HOLDFAST_HOST_WAIT_MINUTES = float(os.environ.get("HOLDFAST_HOST_WAIT_MINUTES", "60"))
if not 0 < HOLDFAST_HOST_BEAT_SECONDS < 300 or HOLDFAST_HOST_WAIT_MINUTES <= 0:
    raise RuntimeError(
        "HOLDFAST_HOST_BEAT_SECONDS must lie between 0 and 300 (a host silent for 5 minutes is "
        "offline) and HOLDFAST_HOST_WAIT_MINUTES must be positive."
    )
# Restore drills (SPEC 3.12) restore a point into a scratch directory under here, re-hash it
# and remove it. Never under a restore root or the storage: a drill writes nowhere else, and
# its clean-up removes only its own `drill-*` directories (vaults/jobs/drills.py).
HOLDFAST_DRILL_ROOT = Path(os.environ.get("HOLDFAST_DRILL_ROOT", VAR_DIR / "drills"))
# PostgreSQL items (docs/workloads.md): the libpq service (pg_service.conf) naming the server
# and role a worker dumps and restores with; empty: libpq's own PG* variables. Never stored.
HOLDFAST_PG_SERVICE = os.environ.get("HOLDFAST_PG_SERVICE", "")
# The most a download from a point's browse page may hold (one file or a zip of a selection):
# it streams through the web server; larger selections are restored to a restore root.
HOLDFAST_DOWNLOAD_MAX_BYTES = int(os.environ.get("HOLDFAST_DOWNLOAD_MAX_BYTES", str(1024**3)))
if HOLDFAST_DOWNLOAD_MAX_BYTES < 1:
    raise RuntimeError("HOLDFAST_DOWNLOAD_MAX_BYTES must be a positive number of bytes.")
# S3-compatible vault storage (docs/storage.md, "S3 and Object Lock"): a vault created with
# storage location s3://bucket/prefix lives there. Credentials come from a JSON secret file,
# else these variables, else boto3's own chain (AWS_ACCESS_KEY_ID, instance roles, ...).
HOLDFAST_S3_ENDPOINT_URL = os.environ.get("HOLDFAST_S3_ENDPOINT_URL", "")
# The regions offered when a vault is created (a list to choose from, plus "Other" for free
# text): HOLDFAST_REGIONS="westeurope,northeurope,on-premises".
HOLDFAST_REGIONS = [
    region.strip()
    for region in os.environ.get(
        "HOLDFAST_REGIONS",
        "westeurope,northeurope,uksouth,francecentral,germanywestcentral,swedencentral,"
        "eastus,eastus2,centralus,westus2,canadacentral,brazilsouth,japaneast,southeastasia,"
        "australiaeast,on-premises",
    ).split(",")
    if region.strip()
]
HOLDFAST_S3_REGION = os.environ.get("HOLDFAST_S3_REGION", "us-east-1")
HOLDFAST_S3_CREDENTIALS_FILE = os.environ.get("HOLDFAST_S3_CREDENTIALS_FILE", "")
HOLDFAST_S3_ACCESS_KEY_ID = os.environ.get("HOLDFAST_S3_ACCESS_KEY_ID", "")
HOLDFAST_S3_SECRET_ACCESS_KEY = os.environ.get("HOLDFAST_S3_SECRET_ACCESS_KEY", "")
# Named S3 endpoints besides the default one, for locations written s3://<name>@bucket/prefix
# (a replica on another region's server or another provider, docs/replicas.md): JSON such as
# {"dr": {"endpoint_url": "https://...", "region": "eu-north-1", "credentials_file": "/path"}};
# every key is optional, as for the default endpoint ("access_key_id"/"secret_access_key"
# instead of a file; neither: boto3's chain).
try:
    HOLDFAST_S3_ENDPOINTS = json.loads(os.environ.get("HOLDFAST_S3_ENDPOINTS", "") or "{}")
except ValueError as exc:
    raise RuntimeError(f"HOLDFAST_S3_ENDPOINTS is not valid JSON: {exc}.") from None
_S3_ENDPOINT_KEYS = {
    "endpoint_url", "region", "credentials_file", "access_key_id", "secret_access_key"
}  # fmt: skip
if not isinstance(HOLDFAST_S3_ENDPOINTS, dict) or not all(
    isinstance(name, str)
    and re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", name)
    and isinstance(config, dict)
    and set(config) <= _S3_ENDPOINT_KEYS
    and all(isinstance(value, str) for value in config.values())
    for name, config in HOLDFAST_S3_ENDPOINTS.items()
):
    raise RuntimeError(
        "HOLDFAST_S3_ENDPOINTS must be a JSON object of lower-case endpoint names, each an "
        f"object with some of the string keys {', '.join(sorted(_S3_ENDPOINT_KEYS))}."
    )
# The archive tier's packs: their storage class, and optionally another bucket for them.
HOLDFAST_S3_ARCHIVE_STORAGE_CLASS = os.environ.get(
    "HOLDFAST_S3_ARCHIVE_STORAGE_CLASS", "GLACIER_IR"
)
HOLDFAST_S3_ARCHIVE_LOCATION = os.environ.get("HOLDFAST_S3_ARCHIVE_LOCATION", "")
# Anchors of the audit chain (docs/security.md, "Audit anchors"): the chain's head, written
# hourly to this directory and, under Object Lock, to these S3 locations (empty: every S3
# vault's location), each locked in this mode for this many days.
HOLDFAST_AUDIT_ANCHOR_DIR = Path(
    os.environ.get("HOLDFAST_AUDIT_ANCHOR_DIR", HOLDFAST_STORAGE_ROOT / "audit-anchors")
)
HOLDFAST_AUDIT_ANCHOR_LOCATIONS = env_list("HOLDFAST_AUDIT_ANCHOR_LOCATIONS", "")
HOLDFAST_AUDIT_ANCHOR_LOCK_MODE = os.environ.get("HOLDFAST_AUDIT_ANCHOR_LOCK_MODE", "COMPLIANCE")
if HOLDFAST_AUDIT_ANCHOR_LOCK_MODE not in {"COMPLIANCE", "GOVERNANCE"}:
    raise RuntimeError("HOLDFAST_AUDIT_ANCHOR_LOCK_MODE must be 'COMPLIANCE' or 'GOVERNANCE'.")
HOLDFAST_AUDIT_ANCHOR_RETENTION_DAYS = int(
    os.environ.get("HOLDFAST_AUDIT_ANCHOR_RETENTION_DAYS", "365")
)
if HOLDFAST_AUDIT_ANCHOR_RETENTION_DAYS < 1:
    raise RuntimeError("HOLDFAST_AUDIT_ANCHOR_RETENTION_DAYS must be at least 1.")
# Alert delivery (SPEC 3.8): e-mail recipients and a webhook signed with HMAC-SHA256.
HOLDFAST_ALERT_EMAILS = env_list("HOLDFAST_ALERT_EMAILS", "")
# The weekly compliance report's PDF (vaults/report_mail.py); empty: not sent.
HOLDFAST_REPORT_EMAILS = env_list("HOLDFAST_REPORT_EMAILS", "")
# The compliance report scans points and jobs side by side on a second database connection
# reading the same snapshot (vaults/reports.py); off: one connection, one scan after another.
HOLDFAST_REPORT_PARALLEL = env_bool("HOLDFAST_REPORT_PARALLEL", True)
HOLDFAST_ALERT_WEBHOOK_URL = os.environ.get("HOLDFAST_ALERT_WEBHOOK_URL", "")
HOLDFAST_ALERT_WEBHOOK_SECRET = os.environ.get("HOLDFAST_ALERT_WEBHOOK_SECRET", "")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "holdfast@localhost")
# How long a lock approval stays pending before it expires (SPEC 3.5).
HOLDFAST_APPROVAL_TTL = timedelta(hours=24)

# --- Celery -------------------------------------------------------------------------------
_BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed", "control"):
        (_BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        # Broadcast exchanges (worker control, fanout): kombu's default is ./control.
        "control_folder": str(_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Longer than the longest job, so Redis never redelivers a task still running.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# The periodic schedule lives in one place; DatabaseScheduler copies it in when beat starts.
CELERY_BEAT_SCHEDULE = schedule.CELERY_BEAT_SCHEDULE
# /healthz/background/ answers 503 once beat has not sent the every-minute dispatcher for this
# long (DatabaseScheduler writes what it sent every 3 minutes, so not below about 300).
HOLDFAST_SCHEDULER_STALE_SECONDS = int(os.environ.get("HOLDFAST_SCHEDULER_STALE_SECONDS", "600"))
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

# --- API ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "portal.api.exception_handler",
    # DRF's parsers, refusing NUL characters, lone surrogates and deep nesting (SPEC 4).
    "DEFAULT_PARSER_CLASSES": [
        "portal.parsers.JSONParser",
        "portal.parsers.FormParser",
        "portal.parsers.MultiPartParser",
    ],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# API tokens (django-rest-knox): only a SHA-512 digest is stored, the key is shown once, to
# whoever signed in for it, and it stops working after HOLDFAST_API_TOKEN_HOURS or as soon as
# its account is deactivated. Clients keep sending ``Authorization: Token <key>``.
HOLDFAST_API_TOKEN_HOURS = int(os.environ.get("HOLDFAST_API_TOKEN_HOURS", "10"))
if HOLDFAST_API_TOKEN_HOURS < 1:
    raise RuntimeError("HOLDFAST_API_TOKEN_HOURS must be a whole number of hours, 1 or more.")
REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Token",
    "TOKEN_TTL": timedelta(hours=HOLDFAST_API_TOKEN_HOURS),
    "AUTO_REFRESH": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Holdfast API",
    "DESCRIPTION": "Backup control plane: vaults, immutability, approvals and audit.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "VaultKindEnum": "vaults.models.Vault.Kind",
        "ApprovalKindEnum": "portal.models.Approval.Kind",
        "ApprovalStatusEnum": "portal.models.Approval.Status",
        "SourceKindEnum": "vaults.models.ProtectedItem.SourceKind",
        "JobKindEnum": "vaults.models.Job.Kind",
    },
    # Swagger UI is served from our own static files, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Web surface ----------------------------------------------------------------------------
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "frame-ancestors": ["'none'"],
        "form-action": [SELF],
        "base-uri": [SELF],
        "object-src": ["'none'"],
    }
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Login throttling (django-axes): 5 failed sign-ins for one username from one address lock that
# pair out for 15 minutes; a success resets the count. The pair, not the username alone, so an
# attacker cannot lock a colleague out from elsewhere. The address is REMOTE_ADDR, never a
# header a client could forge (behind a proxy, that makes the pair the username alone).
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "portal.throttle.lockout_response"
# TOTP second factor (django-otp). With "required" (the production default) approving or denying
# a request needs a fresh code from the approver's confirmed authenticator (SPEC 3.5).
HOLDFAST_APPROVER_2FA = os.environ.get("HOLDFAST_APPROVER_2FA", "off" if DEBUG else "required")
if HOLDFAST_APPROVER_2FA not in {"off", "required"}:
    raise RuntimeError("HOLDFAST_APPROVER_2FA must be 'off' or 'required'.")
OTP_TOTP_ISSUER = "Holdfast"
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REDIRECT_EXEMPT = [r"^healthz/(background/)?$"]
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"refusal_without_traceback": {"()": "portal.logfilters.RefusalWithoutTraceback"}},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's own configuration gives "django" a console handler too (with DEBUG): its
        # records then reached the root's as well and every one was printed twice.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.request": {"filters": ["refusal_without_traceback"]},
    },
}
