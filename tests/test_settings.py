"""Settings come from the environment: the two run modes and the secrets rules.

Each case loads aipk_site.settings in a fresh interpreter with a controlled
environment, so the result does not depend on how the suite itself runs.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from aipk_site import celery_app

ROOT = Path(__file__).resolve().parent.parent

# Everything settings.py reads; scrubbed so each case starts from nothing.
SETTINGS_ENV = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "FERNET_KEYS",
    "DJANGO_SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "LOG_LEVEL",
)

PROBE = """
import json
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps({
    "DEBUG": settings.DEBUG,
    "SECRET_KEY": settings.SECRET_KEY,
    "FERNET_KEYS": settings.FERNET_KEYS,
    "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
    "TIME_ZONE": settings.TIME_ZONE,
    "USE_TZ": settings.USE_TZ,
    "INSTALLED_APPS": settings.INSTALLED_APPS,
    "MIDDLEWARE": settings.MIDDLEWARE,
    "db": {k: db.get(k) for k in (
        "ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "CONN_MAX_AGE", "CONN_HEALTH_CHECKS"
    )},
    "cache": settings.CACHES["default"],
    "channel_layer": settings.CHANNEL_LAYERS["default"],
    "celery": {
        "broker": settings.CELERY_BROKER_URL,
        "result": settings.CELERY_RESULT_BACKEND,
        "eager": settings.CELERY_TASK_ALWAYS_EAGER,
    },
}, default=str))
"""


def run_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    clean["DJANGO_SETTINGS_MODULE"] = "aipk_site.settings"
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def load_settings(**env: str) -> dict:
    proc = run_settings(**env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_it_defaults_to_embedded_mode():
    s = load_settings()

    assert s["db"]["ENGINE"] == "django.db.backends.sqlite3"
    assert s["db"]["NAME"] == str(ROOT / "db.sqlite3")
    # local memory: Django's LocMemCache without memcached's key check
    assert s["cache"]["BACKEND"] == "aipk_site.infra.local_cache.FastLocMemCache"
    assert s["channel_layer"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
    assert s["celery"]["eager"] is True
    assert s["celery"]["broker"] == "memory://"


def test_it_defaults_to_debug_with_development_secrets():
    s = load_settings()

    assert s["DEBUG"] is True
    assert "insecure" in s["SECRET_KEY"]
    assert len(s["FERNET_KEYS"]) == 1
    assert s["TIME_ZONE"] == "UTC"
    assert s["USE_TZ"] is True


def test_it_parses_a_postgres_database_url():
    s = load_settings(DATABASE_URL="postgres://aipk:s3cret@db.internal:6543/aipk_prod")

    assert s["db"]["ENGINE"] == "django.db.backends.postgresql"
    assert s["db"]["NAME"] == "aipk_prod"
    assert s["db"]["USER"] == "aipk"
    assert s["db"]["PASSWORD"] == "s3cret"
    assert s["db"]["HOST"] == "db.internal"
    assert str(s["db"]["PORT"]) == "6543"
    # Django's persistent connections must stay off under ASGI.
    assert s["db"]["CONN_MAX_AGE"] == 0
    assert s["db"]["CONN_HEALTH_CHECKS"] is True


def test_it_switches_cache_channels_and_celery_to_redis():
    url = "redis://cache.internal:6380/2"
    s = load_settings(REDIS_URL=url)

    assert s["cache"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert s["cache"]["LOCATION"] == url
    assert s["channel_layer"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    # no socket timeout on the layer: its blocking receive must not time out (and close
    # the websocket) when the event loop reads a reply late
    assert s["channel_layer"]["CONFIG"]["hosts"] == [{"address": url, "socket_timeout": None}]
    assert s["celery"] == {"broker": url, "result": url, "eager": False}


def test_it_takes_a_separate_celery_broker_with_redis():
    s = load_settings(
        REDIS_URL="redis://cache.internal:6379/0",
        CELERY_BROKER_URL="amqp://guest:guest@mq.internal:5672//",
    )

    assert s["celery"]["broker"] == "amqp://guest:guest@mq.internal:5672//"
    assert s["celery"]["result"] == "redis://cache.internal:6379/0"


def test_it_reads_fernet_keys_as_a_list_first_one_first():
    s = load_settings(FERNET_KEYS="new-key, old-key,older-key")

    assert s["FERNET_KEYS"] == ["new-key", "old-key", "older-key"]


def test_it_reads_allowed_hosts_as_a_list():
    s = load_settings(ALLOWED_HOSTS="aipk.example.com,.internal")

    assert s["ALLOWED_HOSTS"] == ["aipk.example.com", ".internal"]


def test_it_refuses_debug_off_without_a_secret_key():
    proc = run_settings(DEBUG="false", FERNET_KEYS="k1")

    assert proc.returncode != 0
    assert "ImproperlyConfigured" in proc.stderr
    assert "DJANGO_SECRET_KEY is not set" in proc.stderr


def test_it_refuses_debug_off_without_fernet_keys():
    proc = run_settings(DEBUG="false", DJANGO_SECRET_KEY="x" * 50)

    assert proc.returncode != 0
    assert "FERNET_KEYS is not set" in proc.stderr


def test_it_runs_with_debug_off_when_secrets_are_given():
    s = load_settings(DEBUG="false", DJANGO_SECRET_KEY="k" * 50, FERNET_KEYS="prod-key")

    assert s["DEBUG"] is False
    assert s["SECRET_KEY"] == "k" * 50
    assert s["FERNET_KEYS"] == ["prod-key"]


def test_it_installs_the_apps_and_middleware_the_project_needs():
    s = load_settings()

    assert s["INSTALLED_APPS"][0] == "daphne"
    for app in ("channels", "django_htmx", "django_celery_beat", "providers_app", "tenants_app"):
        assert app in s["INSTALLED_APPS"]
    assert "django_htmx.middleware.HtmxMiddleware" in s["MIDDLEWARE"]


def test_it_configures_celery_from_django_settings():
    assert celery_app.conf.broker_url == settings.CELERY_BROKER_URL
    assert celery_app.conf.task_always_eager == settings.CELERY_TASK_ALWAYS_EAGER
    assert celery_app.conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"
