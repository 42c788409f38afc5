"""aipk settings, read from the environment (12-factor, django-environ).

Two run modes, chosen only by which URLs are set:

* embedded (default): SQLite file, local-memory cache, in-memory channel layer,
  Celery tasks run eagerly in-process. Needs nothing but Python.
* production / scale-out: DATABASE_URL (PostgreSQL) and REDIS_URL (cache,
  channel layer, Celery broker and results).

DEBUG defaults to on for local development. With DEBUG off, DJANGO_SECRET_KEY
and FERNET_KEYS must be set; there are no fallbacks for them.
"""

import re
import warnings
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

# FileAwareEnv: NAME_FILE=/run/secrets/..., when set, is read instead of NAME (container
# secrets, compose.yaml), so secrets need not sit in the environment.
env = environ.FileAwareEnv()

DEBUG = env.bool("DEBUG", default=True)

# Development-only values: public on purpose, refused when DEBUG is off.
_DEV_SECRET_KEY = "aipk-insecure-development-key-do-not-use-in-production"
_DEV_FERNET_KEY = "aipk-insecure-development-fernet-key"


def _required_outside_debug(name: str, dev_default: str) -> str:
    # strip: a secret read from a file (NAME_FILE) usually ends with a newline
    value = env.str(name, default="").strip()
    if value:
        return value
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(
        f"{name} is not set. It is required when DEBUG is off; set it in the "
        f"environment (or set DEBUG=true for local development)."
    )


SECRET_KEY = _required_outside_debug("DJANGO_SECRET_KEY", _DEV_SECRET_KEY)
# Rotating DJANGO_SECRET_KEY (docs/DEPLOY.md): the old key goes here while sessions and
# signed values made with it expire; Django verifies with these and signs only with SECRET_KEY.
SECRET_KEY_FALLBACKS = [
    key.strip() for key in env.list("DJANGO_SECRET_KEY_FALLBACKS", default=[]) if key.strip()
]

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
    "axes",  # login throttling (docs/SECURITY.md)
    "csp",  # Content-Security-Policy (docs/SECURITY.md)
    # django-ninja's templates and bundled Swagger UI: /api/docs and /v1/docs load it from
    # aipk's own /static/ instead of a CDN (offline, and under the CSP: no inline script)
    "ninja",
    "providers_app",
    "tenants_app",
    "aipk_site.gateway",  # the data plane; an app only for its signal receivers
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
    # Content-Security-Policy on every site response (the gateway's /v1/ has its own stack)
    "aipk_site.csp.ConsoleCSPMiddleware",
    # last, as django-axes asks: turns a locked-out sign-in into its 429 answer
    "axes.middleware.AxesMiddleware",
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
# Deadlines of every cache call (the shared state store's Lua scripts included): a
# Redis that died or froze (SIGSTOP, a network partition) costs a request at most
# this long, then the request fails with an error rather than hanging.
REDIS_CONNECT_TIMEOUT_SECONDS = env.float("REDIS_CONNECT_TIMEOUT_SECONDS", default=1.0)
REDIS_SOCKET_TIMEOUT_SECONDS = env.float("REDIS_SOCKET_TIMEOUT_SECONDS", default=2.0)

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "aipk",
            # A lost Redis must fail a call in seconds, not hang a request: a connect
            # and a reply each get their own deadline (REDIS_*_TIMEOUT_SECONDS below).
            # No retries on a timeout (redis-py's Retry default for a pool is none).
            "OPTIONS": {
                "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_SECONDS,
                "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
            },
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
            # LocMemCache without memcached's per-key check (aipk_site/infra/local_cache.py)
            "BACKEND": "aipk_site.infra.local_cache.FastLocMemCache",
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

# --- Security: HTTPS, cookies, headers, CSP, sign-in throttling (docs/SECURITY.md) -----
# Production-safe when DEBUG is off, plain local http when it is on; each one can be set
# from the environment. aipk expects a TLS-terminating proxy in front of it in production.
_SECURE_DEFAULT = not DEBUG
# Behind a proxy that sets X-Forwarded-Proto (and drops any value a client sent), set
# SECURE_PROXY_SSL_HEADER=true so Django sees https requests as https. Never without such a
# proxy: a client could then claim https itself.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https")
    if env.bool("SECURE_PROXY_SSL_HEADER", default=False)
    else None
)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=_SECURE_DEFAULT)
# Probes and scrapers often talk plain http to the app behind the proxy: never redirected.
SECURE_REDIRECT_EXEMPT = [r"^(health|ready|metrics|metrics\.json)$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if _SECURE_DEFAULT else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=_SECURE_DEFAULT)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=_SECURE_DEFAULT)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=_SECURE_DEFAULT)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=_SECURE_DEFAULT)
SECURE_CONTENT_TYPE_NOSNIFF = env.bool("SECURE_CONTENT_TYPE_NOSNIFF", default=True)
X_FRAME_OPTIONS = env.str("X_FRAME_OPTIONS", default="DENY")
SECURE_REFERRER_POLICY = env.str("SECURE_REFERRER_POLICY", default="same-origin")
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# Content-Security-Policy (django-csp): the console's scripts are files under /static/,
# never inline. Styles may be inline: htmx inserts its indicator style, Chart.js sizes
# its canvases and the admin uses style attributes; a style cannot run code.
# connect-src: the playground's websocket (aipk_site/csp.py adds ws(s)://<this host>).
# The OpenAPI pages (/api/docs, /v1/docs) are under it too: Swagger UI comes from
# django-ninja's own static files ("ninja" in INSTALLED_APPS), its settings in a JSON
# <script type="application/json"> that a file under /static/ reads.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        # no form-action: "Connect" posts a form that redirects to a provider's OAuth
        # authorisation page, on whatever origin an admin configured, and browsers apply
        # form-action to that redirect too
        "frame-ancestors": ["'none'"],
    },
}

# Sign-in throttling (django-axes), console and admin alike: after AXES_FAILURE_LIMIT
# failed attempts for one username from one IP address, that pair is locked out for
# LOGIN_LOCKOUT_MINUTES, the right password included (429). Attempts are rows in the
# database, so every process agrees; the admin lists and resets them ("Axes").
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # ModelBackend that refuses passwords while LOCAL_PASSWORDS_ENABLED is off (SSO below)
    "tenants_app.auth_backends.LocalPasswordBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The address Django sees (REMOTE_ADDR): behind a proxy, the server must put the client's
# address there (daphne --proxy-headers, uvicorn --forwarded-allow-ips), as for the API.
AXES_CLIENT_IP_CALLABLE = "aipk_site.infra.client_ip.client_ip"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Its attempt log and these settings' names stay out of the request log.
AXES_VERBOSE = False

# --- Single sign-on: OpenID Connect for the console (docs/SECURITY.md "Single sign-on") ---
# On when OIDC_ISSUER (or OIDC_DISCOVERY_URL) and OIDC_CLIENT_ID are set. authlib does the
# protocol (discovery, state, nonce, PKCE, id_token signature and claims);
# tenants_app/services/sso.py maps the groups claim to staff, superuser and tenant roles on
# every sign-in.
OIDC_ISSUER = env.str("OIDC_ISSUER", default="").rstrip("/")
OIDC_DISCOVERY_URL = env.str(
    "OIDC_DISCOVERY_URL",
    default=f"{OIDC_ISSUER}/.well-known/openid-configuration" if OIDC_ISSUER else "",
)
OIDC_CLIENT_ID = env.str("OIDC_CLIENT_ID", default="")
OIDC_CLIENT_SECRET = env.str("OIDC_CLIENT_SECRET", default="")
OIDC_SCOPES = env.str("OIDC_SCOPES", default="openid email profile")
OIDC_PROVIDER_NAME = env.str("OIDC_PROVIDER_NAME", default="single sign-on")
OIDC_GROUPS_CLAIM = env.str("OIDC_GROUPS_CLAIM", default="groups")
OIDC_STAFF_GROUPS = env.list("OIDC_STAFF_GROUPS", default=[])
OIDC_SUPERUSER_GROUPS = env.list("OIDC_SUPERUSER_GROUPS", default=[])
# a group naming a tenant role; named groups "tenant" (a slug) and "role" are required
OIDC_TENANT_ROLE_PATTERN = env.str(
    "OIDC_TENANT_ROLE_PATTERN",
    default=r"^aipk:(?P<tenant>[-a-zA-Z0-9_]+):(?P<role>owner|admin|member|viewer)$",
)
try:
    _tenant_role_groups = set(re.compile(OIDC_TENANT_ROLE_PATTERN).groupindex)
except re.error as exc:
    raise ImproperlyConfigured(
        f"OIDC_TENANT_ROLE_PATTERN is not a regular expression: {exc}"
    ) from None
if not {"tenant", "role"} <= _tenant_role_groups:
    raise ImproperlyConfigured(
        "OIDC_TENANT_ROLE_PATTERN needs the named groups (?P<tenant>...) and (?P<role>...)."
    )
OIDC_TIMEOUT_SECONDS = env.float("OIDC_TIMEOUT_SECONDS", default=10.0)
# Off: the console and admin password forms refuse and SSO is the only way in.
LOCAL_PASSWORDS_ENABLED = env.bool("LOCAL_PASSWORDS_ENABLED", default=True)
if OIDC_DISCOVERY_URL and "openid" not in OIDC_SCOPES.split():
    raise ImproperlyConfigured("OIDC_SCOPES must include 'openid'.")
if not LOCAL_PASSWORDS_ENABLED and not (OIDC_DISCOVERY_URL and OIDC_CLIENT_ID):
    raise ImproperlyConfigured(
        "LOCAL_PASSWORDS_ENABLED is off but single sign-on is not configured (OIDC_ISSUER, "
        "OIDC_CLIENT_ID): nobody could sign in."
    )

# --- Logging: one record per line on stdout (docs/MONITORING.md, "Logs") ----------
# LOG_FORMAT=json writes one JSON object per line (time, level, logger, message,
# request_id, extra fields); LOG_FORMAT=line a readable line. Default: json in
# production (DEBUG off), line in development (DEBUG on). Every handler adds the
# request id and masks anything that looks like a secret (aipk_site/infra/log_context.py).
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
        "request_id": {"()": "aipk_site.infra.log_context.RequestIdFilter"},
        "mask_secrets": {"()": "aipk_site.infra.log_context.SecretMaskFilter"},
    },
    "formatters": {
        "line": {
            "()": "aipk_site.infra.log_context.LineFormatter",
            "format": "%(asctime)s level=%(levelname)s logger=%(name)s "
            "request_id=%(request_id)s %(message)s",
        },
        "json": {"()": "aipk_site.infra.log_context.JsonFormatter"},
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
        # django-axes: a line per failed sign-in at INFO; repeated failures and lockouts warn
        "axes": {"level": "WARNING"},
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
# Conversations stored by POST /v1/responses (store: true, the default) are deleted by
# the same daily run after this many days (OpenAI keeps them 30 days). 0 keeps them.
RESPONSES_RETENTION_DAYS = env.int("RESPONSES_RETENTION_DAYS", default=30)
# Stored /v1/responses wait in memory at most this long before their batched write.
RESPONSES_FLUSH_INTERVAL_SECONDS = env.float("RESPONSES_FLUSH_INTERVAL_SECONDS", default=0.5)

# --- request log (hB) ---
# Captured request/response bodies (Tenant/VirtualKey.capture_bodies, off by default): each
# side cut to this many UTF-8 bytes, kept this many days (the daily retention run deletes
# them; 0 keeps them), written in batches at most this often.
REQUEST_LOG_BODY_MAX_BYTES = env.int("REQUEST_LOG_BODY_MAX_BYTES", default=32 * 1024)
REQUEST_LOG_BODY_RETENTION_DAYS = env.int("REQUEST_LOG_BODY_RETENTION_DAYS", default=7)
REQUEST_LOG_FLUSH_INTERVAL_SECONDS = env.float("REQUEST_LOG_FLUSH_INTERVAL_SECONDS", default=0.5)
# --- end request log ---
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

# /metrics and /metrics.json: with METRICS_TOKEN set they answer only
# "Authorization: Bearer <METRICS_TOKEN>" (401 otherwise); unset, they are open and
# `manage.py check --deploy` warns (aipk.W001).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Label values come only from known sets (providers, known models, route aliases), read
# from the database by this function at most every METRICS_LABELS_REFRESH_SECONDS, and
# each label holds at most METRICS_MAX_LABEL_VALUES values per process; the rest are "other".
METRICS_KNOWN_LABELS = "aipk_site.metric_labels.known_labels"
METRICS_LABELS_REFRESH_SECONDS = env.float("METRICS_LABELS_REFRESH_SECONDS", default=60.0)
METRICS_MAX_LABEL_VALUES = env.int("METRICS_MAX_LABEL_VALUES", default=1000)

# --- Alerts (tenants_app/services/alerts, docs/MONITORING.md "Alerts") ---------------
# One delivery is tried ALERT_MAX_ATTEMPTS times, waiting a random time up to
# ALERT_RETRY_BACKOFF_SECONDS * 2**retry (at most ALERT_RETRY_MAX_SECONDS) in between;
# each webhook POST gets ALERT_WEBHOOK_TIMEOUT_SECONDS.
ALERT_MAX_ATTEMPTS = env.int("ALERT_MAX_ATTEMPTS", default=5)
ALERT_RETRY_BACKOFF_SECONDS = env.int("ALERT_RETRY_BACKOFF_SECONDS", default=2)
ALERT_RETRY_MAX_SECONDS = env.int("ALERT_RETRY_MAX_SECONDS", default=600)
ALERT_WEBHOOK_TIMEOUT_SECONDS = env.float("ALERT_WEBHOOK_TIMEOUT_SECONDS", default=5.0)
# Budget alerts read a key's or tenant's budget and month spend from the database at most
# this often per process (in between, the process adds the costs it stores itself).
ALERT_BUDGET_RESYNC_SECONDS = env.float("ALERT_BUDGET_RESYNC_SECONDS", default=30.0)
# A rotated key's grace period ending within this many hours is announced (once).
ALERT_GRACE_WARNING_HOURS = env.float("ALERT_GRACE_WARNING_HOURS", default=24.0)

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
# A quota reply without a reset time (OpenAI's insufficient_quota) cools the key down
# this long instead of marking it invalid: quotas come back. The same 403 on two
# different models of one key within the window marks the key invalid (docs/PROVIDERS.md).
PROVIDER_QUOTA_COOLDOWN_SECONDS = env.float("PROVIDER_QUOTA_COOLDOWN_SECONDS", default=3600.0)
PROVIDER_PERMISSION_WINDOW_SECONDS = env.float("PROVIDER_PERMISSION_WINDOW_SECONDS", default=600.0)
# Connections one process may hold open to one provider (each stream holds one for its
# whole length). Past it a request waits for a free one and, if none frees in time, gets
# 503 gateway_overloaded. High on purpose: the providers' rate limits are the real bound.
UPSTREAM_MAX_CONNECTIONS = env.int("UPSTREAM_MAX_CONNECTIONS", default=10_000)

# --- Gateway (tenants_app, docs/GATEWAY.md) ------------------------------------
# Input guard: bigger bodies get 413, longer conversations or tool lists 400.
GATEWAY_MAX_BODY_BYTES = env.int("GATEWAY_MAX_BODY_BYTES", default=4 * 1024 * 1024)
GATEWAY_MAX_MESSAGES = env.int("GATEWAY_MAX_MESSAGES", default=2000)
GATEWAY_MAX_MESSAGE_CHARS = env.int("GATEWAY_MAX_MESSAGE_CHARS", default=1_000_000)
GATEWAY_MAX_TOOLS = env.int("GATEWAY_MAX_TOOLS", default=128)
# images, documents and audio in messages (docs/GATEWAY.md "Images, files and audio"):
# decoded bytes per part and per request; inline media are bounded by the body limit too
GATEWAY_MAX_MEDIA_PART_BYTES = env.int("GATEWAY_MAX_MEDIA_PART_BYTES", default=10 * 1024 * 1024)
GATEWAY_MAX_MEDIA_REQUEST_BYTES = env.int(
    "GATEWAY_MAX_MEDIA_REQUEST_BYTES", default=20 * 1024 * 1024
)
# fetching a media URL for a provider that needs the bytes (providers_app/kit/media_fetch.py).
# MEDIA_FETCH_ALLOW_PRIVATE lifts the guard against private/loopback/link-local addresses:
# for tests against the loopback simulator only, never in production.
MEDIA_FETCH_MAX_BYTES = env.int("MEDIA_FETCH_MAX_BYTES", default=10 * 1024 * 1024)
MEDIA_FETCH_TIMEOUT_SECONDS = env.float("MEDIA_FETCH_TIMEOUT_SECONDS", default=10.0)
MEDIA_FETCH_MAX_REDIRECTS = env.int("MEDIA_FETCH_MAX_REDIRECTS", default=3)
MEDIA_FETCH_ALLOW_PRIVATE = env.bool("MEDIA_FETCH_ALLOW_PRIVATE", default=False)
# Load shedding (docs/GATEWAY.md "Load shedding"): while a worker's event loop runs more
# than this late on average over the last second (CPU backlog: queueing delay), new /v1
# requests get 503 gateway_overloaded at once instead of queueing without bound.
# 0 turns it off.
GATEWAY_MAX_QUEUE_DELAY_MS = env.int("GATEWAY_MAX_QUEUE_DELAY_MS", default=250)
# A memory guard, not the overload signal: /v1 requests one worker holds from arrival
# until their answer starts (a stream until its first chunk), most of them usually just
# waiting on a provider; past it new ones are shed too. 0 turns it off.
GATEWAY_MAX_IN_FLIGHT = env.int("GATEWAY_MAX_IN_FLIGHT", default=10_000)
# Websocket chat (/ws/chat/, docs/WEBSOCKET.md): requests one socket may run at once;
# a socket's messages are bounded by GATEWAY_MAX_BODY_BYTES like a REST body.
WS_MAX_IN_FLIGHT = env.int("WS_MAX_IN_FLIGHT", default=16)
# The most a websocket server takes in one message before closing the socket with 1009
# (daphne's own default is 1 MiB, below GATEWAY_MAX_BODY_BYTES). Messages between the
# two limits are read and answered with chat.error payload_too_large, the socket kept.
WS_MAX_MESSAGE_BYTES = env.int("WS_MAX_MESSAGE_BYTES", default=GATEWAY_MAX_BODY_BYTES + 1024 * 1024)
# daphne's runserver (and so run_embedded) reads these two
DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = WS_MAX_MESSAGE_BYTES
DAPHNE_WEBSOCKET_MAX_FRAME_SIZE = WS_MAX_MESSAGE_BYTES
# In-memory snapshots (aipk_site/infra/change_events.py): every change publishes an
# event and every process drops its copy at once (across processes through Redis
# pub/sub); these TTLs are only the safety net for an event lost while Redis was away.
# A virtual key's lookup (by hash) is kept this long in each process.
VIRTUAL_KEY_CACHE_SECONDS = env.int("VIRTUAL_KEY_CACHE_SECONDS", default=300)
# A hash that matches no key is remembered this long, so a client repeating a wrong
# key costs one query per period; creating a key drops it at once.
VIRTUAL_KEY_UNKNOWN_CACHE_SECONDS = env.float("VIRTUAL_KEY_UNKNOWN_CACHE_SECONDS", default=5.0)
# Routes, providers, usable credentials and prices are kept this long in each process.
ROUTING_CACHE_SECONDS = env.float("ROUTING_CACHE_SECONDS", default=60.0)
# The longest TTL a key or request may ask of the response cache.
RESPONSE_CACHE_MAX_TTL_SECONDS = env.int("RESPONSE_CACHE_MAX_TTL_SECONDS", default=24 * 60 * 60)
# Budgets and admission (docs/GATEWAY.md "Limits and budgets"). A request's
# reservation and stream slot are leases: unsettled after this long (its process
# was killed), they are reclaimed. Keep it above the longest request (the
# providers' total deadlines). ADMISSION_STREAM_MAX_SECONDS is its old name.
ADMISSION_LEASE_SECONDS = env.float(
    "ADMISSION_LEASE_SECONDS", default=env.float("ADMISSION_STREAM_MAX_SECONDS", default=900)
)
# Usage records are written in batches: whichever comes first.
USAGE_BATCH_SIZE = env.int("USAGE_BATCH_SIZE", default=200)
USAGE_FLUSH_INTERVAL_SECONDS = env.float("USAGE_FLUSH_INTERVAL_SECONDS", default=0.5)
# --- Faults end cleanly (docs/GATEWAY.md "Faults", docs/MONITORING.md) ----------
# Usage rows the database cannot take (down, cut off, locked) wait in a spool on local
# disk, one SQLite file per database in this directory (fsync'd), at most this many
# rows, tried again this often and by any process started later.
USAGE_SPOOL_DIR = Path(env.str("USAGE_SPOOL_DIR", default=str(BASE_DIR / "var" / "usage-spool")))
USAGE_SPOOL_MAX_ROWS = env.int("USAGE_SPOOL_MAX_ROWS", default=1_000_000)
USAGE_SPOOL_RETRY_SECONDS = env.float("USAGE_SPOOL_RETRY_SECONDS", default=5.0)
# SIGTERM (or an ASGI lifespan shutdown): new requests get 503, requests in flight
# (streams included) may finish for this long, then are ended with an error event;
# then usage rows are flushed (aipk_site/gateway/shutdown.py).
SHUTDOWN_DRAIN_SECONDS = env.float("SHUTDOWN_DRAIN_SECONDS", default=30.0)
# `manage.py serve`: how long an idle client connection is kept open for its next request.
# Above the idle timeout of whatever sits in front (AWS ALB 60 s, nginx's upstream
# keepalive 60 s): a server that closes first races the proxy reusing the connection, and
# the proxy answers that request with a 502. uvicorn's own default is 5 s.
SERVER_KEEP_ALIVE_SECONDS = env.int("SERVER_KEEP_ALIVE_SECONDS", default=75)
# A database that does not answer a connection attempt fails it after this long
# (PostgreSQL's connect_timeout) instead of holding a request or the usage writer.
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT_SECONDS", default=5)
    )
# Django refuses bodies over this before a view sees them; the gateway's own limit
# (GATEWAY_MAX_BODY_BYTES, answered with 413) must be the one that applies.
DATA_UPLOAD_MAX_MEMORY_SIZE = GATEWAY_MAX_BODY_BYTES
