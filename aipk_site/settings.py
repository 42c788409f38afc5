"""aipk settings, read from the environment (12-factor, django-environ).

Two run modes, chosen only by which URLs are set:

* embedded (default): SQLite file, local-memory cache, in-memory channel layer,
  Celery tasks run eagerly in-process. Needs nothing but Python.
* production / scale-out: DATABASE_URL (PostgreSQL) and REDIS_URL (cache,
  channel layer, Celery broker and results).

DEBUG defaults to on for local development. With DEBUG off, DJANGO_SECRET_KEY
and FERNET_KEYS must be set; there are no fallbacks for them.
"""

import warnings
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DEBUG", default=True)

# Development-only values: public on purpose, refused when DEBUG is off.
_DEV_SECRET_KEY = "aipk-insecure-development-key-do-not-use-in-production"
_DEV_FERNET_KEY = "aipk-insecure-development-fernet-key"


def _required_outside_debug(name: str, dev_default: str) -> str:
    value = env.str(name, default="")
    if value:
        return value
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(
        f"{name} is not set. It is required when DEBUG is off; set it in the "
        f"environment (or set DEBUG=true for local development)."
    )


SECRET_KEY = _required_outside_debug("DJANGO_SECRET_KEY", _DEV_SECRET_KEY)

# django-fernet-fields: the first key encrypts, every key decrypts; rotate by
# putting a new key first and running `manage.py rotate_fernet_keys`. Keys are
# arbitrary strings: the library derives Fernet keys from them with HKDF.
FERNET_KEYS = [
    key.strip()
    for key in _required_outside_debug("FERNET_KEYS", _DEV_FERNET_KEY).split(",")
    if key.strip()
]
if not FERNET_KEYS:
    raise ImproperlyConfigured("FERNET_KEYS is set but holds no key.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",  # first, so `runserver` serves ASGI
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_htmx",
    "django_celery_beat",
    "providers_app",
    "tenants_app",
]

MIDDLEWARE = [
    # first: every later middleware's and view's log lines carry the request id
    "aipk_site.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "aipk_site.urls"
ASGI_APPLICATION = "aipk_site.asgi.application"
WSGI_APPLICATION = "aipk_site.wsgi.application"

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
                "aipk_site.console.context.console_nav",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
# Under ASGI, Django's persistent connections must stay off (CONN_MAX_AGE=0,
# see Django's "Databases" docs): async requests run in varying threads. Pooling
# belongs to the driver (psycopg's pool) or an external pooler.
DATABASES["default"].setdefault("CONN_MAX_AGE", 0)
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, channel layer, Celery: local memory or Redis -------------------
REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "aipk",
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # socket_timeout None: every consumer waits on the layer with a blocking
            # BZPOPMIN whose own timeout is 5 s, and redis-py 8's default 5 s socket
            # timeout made a read the busy loop got to late raise inside the consumer,
            # closing that websocket with 1011 (django/channels_redis#422; found by
            # benchmarks/bench_websocket_load.py: a socket every 5-10 s under load)
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                "prefix": "aipk:channels",
            },
        }
    }
    # A RabbitMQ broker can replace Redis here; results stay on Redis.
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "aipk",
        }
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
    CELERY_RESULT_BACKEND = "cache+memory://"
    CELERY_TASK_ALWAYS_EAGER = True
    CELERY_TASK_EAGER_PROPAGATES = True

CELERY_TIMEZONE = "UTC"
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# --- Auth, i18n, static ----------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# WhiteNoise serves /static/ from the app itself. With finders on, the few console
# files (css, js, vendored htmx) are served straight from static/ without a
# collectstatic step, in `make run`, the tests and a plain production start alike.
WHITENOISE_USE_FINDERS = True
# ...so STATIC_ROOT exists only after an optional collectstatic; until then
# WhiteNoise's warning about the missing folder is noise.
warnings.filterwarnings("ignore", message=r"No directory at: .*staticfiles", category=UserWarning)

# The console (/console/) signs people in with Django's own auth views.
LOGIN_URL = "/console/login/"
LOGIN_REDIRECT_URL = "/console/"
LOGOUT_REDIRECT_URL = "/console/login/"

# --- Logging: one record per line on stdout (docs/MONITORING.md, "Logs") ----------
# LOG_FORMAT=json writes one JSON object per line (time, level, logger, message,
# request_id, extra fields); LOG_FORMAT=line a readable line. Default: json in
# production (DEBUG off), line in development (DEBUG on). Every handler adds the
# request id and masks anything that looks like a secret (aipk_site/log_context.py).
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOG_FORMAT = env.str("LOG_FORMAT", default="line" if DEBUG else "json").lower()
if LOG_FORMAT not in ("json", "line"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'json' or 'line', not {LOG_FORMAT!r}.")
# One INFO line per gateway request (logger aipk.gateway.requests: endpoint, status,
# provider, tokens, latency). Off by default: /metrics has the aggregates.
GATEWAY_REQUEST_LOG = env.bool("GATEWAY_REQUEST_LOG", default=False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "aipk_site.log_context.RequestIdFilter"},
        "mask_secrets": {"()": "aipk_site.log_context.SecretMaskFilter"},
    },
    "formatters": {
        "line": {
            "()": "aipk_site.log_context.LineFormatter",
            "format": "%(asctime)s level=%(levelname)s logger=%(name)s "
            "request_id=%(request_id)s %(message)s",
        },
        "json": {"()": "aipk_site.log_context.JsonFormatter"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "mask_secrets"],
        },
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["stdout"], "level": LOG_LEVEL, "propagate": False},
        "aipk.gateway.requests": {"level": "INFO" if GATEWAY_REQUEST_LOG else "WARNING"},
    },
}
# Celery workers keep this configuration instead of installing their own root handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Monitoring: discovery, health checks, metrics (docs/MONITORING.md) ------
# How long a provider's discovered model list is reused before it is fetched
# again, and how long a static fallback list is reused after a failed fetch.
MODEL_DISCOVERY_CACHE_TTL = env.int("MODEL_DISCOVERY_CACHE_TTL", default=24 * 60 * 60)
MODEL_DISCOVERY_FALLBACK_TTL = env.int("MODEL_DISCOVERY_FALLBACK_TTL", default=5 * 60)
# Health-check rows older than this are deleted by the periodic health task.
HEALTH_CHECK_RETENTION_DAYS = env.int("HEALTH_CHECK_RETENTION_DAYS", default=30)
# /ready gives the database and the cache this long each before calling them down.
READY_TIMEOUT_SECONDS = env.float("READY_TIMEOUT_SECONDS", default=2.0)
# Usage records and audit events older than this are deleted daily (tenants.prune_retention),
# in batches of RETENTION_BATCH_SIZE rows. 0 keeps them forever. Keep usage longer than
# the invoice run needs (this month and last): at least 62 days.
USAGE_RETENTION_DAYS = env.int("USAGE_RETENTION_DAYS", default=400)
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=400)
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=5000)
# prometheus-client's multiprocess mode is switched on by the environment
# variable PROMETHEUS_MULTIPROC_DIR itself (read when prometheus_client is
# imported, so it cannot be a Django setting). Set it in the start-up script
# of every server and worker process, and empty the directory before they
# start. Here it is only checked, so a typo fails at start-up, not per request.
_prometheus_dir = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if _prometheus_dir and not Path(_prometheus_dir).is_dir():
    raise ImproperlyConfigured(
        f"PROMETHEUS_MULTIPROC_DIR={_prometheus_dir!r} is not a directory. Create it (and empty "
        "it) before starting aipk's processes, or unset it for single-process mode."
    )

# --- OAuth flows (providers_app.services.oauth, docs/OAUTH.md) --------------
# Tokens expiring within this many seconds are refreshed (by the Celery task
# and on demand when a request picks the credential).
OAUTH_REFRESH_BUFFER_SECONDS = env.int("OAUTH_REFRESH_BUFFER_SECONDS", default=300)
# Lifetime of an authorisation's single-use `state` (OAuthFlow rows).
OAUTH_FLOW_TTL_SECONDS = env.int("OAUTH_FLOW_TTL_SECONDS", default=600)
# The refresh lock (a cache key) lives at most this long; waiters give up after
# OAUTH_REFRESH_WAIT_SECONDS.
OAUTH_REFRESH_LOCK_SECONDS = env.int("OAUTH_REFRESH_LOCK_SECONDS", default=30)
OAUTH_REFRESH_WAIT_SECONDS = env.int("OAUTH_REFRESH_WAIT_SECONDS", default=20)

# --- Provider request path: failover and circuit breaker (providers_app/services/chat.py)
# Attempts per request across a provider's credentials; the longest wait
# between attempts (a provider's retry-after is honoured up to this); the
# breaker opens after this many consecutive provider failures and lets one
# probe through after the reset time.
PROVIDER_MAX_ATTEMPTS = env.int("PROVIDER_MAX_ATTEMPTS", default=3)
PROVIDER_RETRY_MAX_DELAY_SECONDS = env.float("PROVIDER_RETRY_MAX_DELAY_SECONDS", default=10.0)
PROVIDER_BREAKER_FAILURES = env.int("PROVIDER_BREAKER_FAILURES", default=5)
PROVIDER_BREAKER_RESET_SECONDS = env.float("PROVIDER_BREAKER_RESET_SECONDS", default=30.0)

# --- Gateway (tenants_app, docs/GATEWAY.md) ------------------------------------
# Input guard: bigger bodies get 413, longer conversations or tool lists 400.
GATEWAY_MAX_BODY_BYTES = env.int("GATEWAY_MAX_BODY_BYTES", default=4 * 1024 * 1024)
GATEWAY_MAX_MESSAGES = env.int("GATEWAY_MAX_MESSAGES", default=2000)
GATEWAY_MAX_MESSAGE_CHARS = env.int("GATEWAY_MAX_MESSAGE_CHARS", default=1_000_000)
GATEWAY_MAX_TOOLS = env.int("GATEWAY_MAX_TOOLS", default=128)
# Websocket chat (/ws/chat/, docs/WEBSOCKET.md): requests one socket may run at once;
# a socket's messages are bounded by GATEWAY_MAX_BODY_BYTES like a REST body.
WS_MAX_IN_FLIGHT = env.int("WS_MAX_IN_FLIGHT", default=16)
# A virtual key's lookup (by hash) is cached this long in each process; revoking
# a key also drops it from the shared cache at once.
VIRTUAL_KEY_CACHE_SECONDS = env.int("VIRTUAL_KEY_CACHE_SECONDS", default=30)
# Routes, providers and prices are cached in each process this long; the
# process that changes one drops its copy at once.
ROUTING_CACHE_SECONDS = env.float("ROUTING_CACHE_SECONDS", default=5.0)
# The longest TTL a key or request may ask of the response cache.
RESPONSE_CACHE_MAX_TTL_SECONDS = env.int("RESPONSE_CACHE_MAX_TTL_SECONDS", default=24 * 60 * 60)
# A stream still counted as running after this long is assumed dead (its
# process crashed) and stops counting against max concurrent streams.
ADMISSION_STREAM_MAX_SECONDS = env.int("ADMISSION_STREAM_MAX_SECONDS", default=900)
# Usage records are written in batches: whichever comes first.
USAGE_BATCH_SIZE = env.int("USAGE_BATCH_SIZE", default=200)
USAGE_FLUSH_INTERVAL_SECONDS = env.float("USAGE_FLUSH_INTERVAL_SECONDS", default=0.5)
# Django refuses bodies over this before a view sees them; the gateway's own limit
# (GATEWAY_MAX_BODY_BYTES, answered with 413) must be the one that applies.
DATA_UPLOAD_MAX_MEMORY_SIZE = GATEWAY_MAX_BODY_BYTES
