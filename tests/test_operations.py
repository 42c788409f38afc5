"""/health, /ready, request ids, JSON log lines and secret masking."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.utils import timezone

from aipk_site.infra.log_context import (
    JsonFormatter,
    LineFormatter,
    RequestIdFilter,
    SecretMaskFilter,
    bind_request_id,
    mask_secrets,
)
from providers_app.models import ApiKey, HealthCheck, Provider
from providers_app.services.chat import resilience_for

ROOT = Path(__file__).resolve().parents[1]
VIRTUAL_KEY = "aipk-Zq8vN3xR7tLp2WcYb5Hd9KfM4sJ6uE1gA0oIrTy"
ADMIN_TOKEN = "aipkadm-Q1w2E3r4T5y6U7i8O9p0AsDfGhJkLzXc"
PROVIDER_KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz012345"


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()  # breaker state lives there
    yield
    cache.clear()


def provider(name: str = "openai-prod", *, enabled: bool = True) -> Provider:
    return Provider.objects.create(name=name, type="openai", enabled=enabled)


def check(p: Provider, healthy: bool, *, minutes_ago: int = 0, api_key=None) -> HealthCheck:
    return HealthCheck.objects.create(
        provider=p,
        api_key=api_key,
        healthy=healthy,
        latency_ms=12.5,
        error_type="" if healthy else "authentication_error",
        detail="" if healthy else f"rejected key {PROVIDER_KEY}",
        checked_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def open_breaker(p: Provider) -> None:
    breaker = resilience_for(p).breaker

    async def fail() -> None:
        for _ in range(breaker.failure_threshold):
            await breaker.record_failure()

    asyncio.run(fail())


# -- /health ------------------------------------------------------------------------------


def test_it_reports_ok_with_no_providers(client, db):
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "providers": {}}
    assert "no-cache" in response["cache-control"]


def test_it_reports_each_providers_latest_check_and_breaker(client, db):
    p = provider()
    check(p, healthy=False, minutes_ago=10)
    latest = check(p, healthy=True, minutes_ago=1)

    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "providers": {
            "openai-prod": {
                "status": "ok",
                "checked_at": latest.checked_at.isoformat(),
                "breaker": "closed",
            }
        },
    }


def test_it_is_degraded_when_an_enabled_providers_latest_check_failed(client, db):
    check(provider("anthropic"), healthy=True)
    failing = provider("openai-prod")
    check(failing, healthy=True, minutes_ago=10)
    check(failing, healthy=False, minutes_ago=1)

    response = client.get("/health")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["providers"]["openai-prod"]["status"] == "degraded"
    assert body["providers"]["anthropic"]["status"] == "ok"
    assert PROVIDER_KEY not in response.content.decode()  # the check's detail is not shown


def test_it_is_degraded_when_a_breaker_is_open(client, db):
    p = provider()
    check(p, healthy=True)
    open_breaker(p)

    response = client.get("/health")

    assert response.status_code == 503
    assert response.json()["providers"]["openai-prod"] == {
        "status": "degraded",
        "checked_at": HealthCheck.objects.get().checked_at.isoformat(),
        "breaker": "open",
    }


def test_it_ignores_disabled_providers_and_credential_checks(client, db):
    check(provider("old", enabled=False), healthy=False)
    p = provider()
    key = ApiKey.objects.create(provider=p, label="k", secret=PROVIDER_KEY)
    check(p, healthy=True, minutes_ago=5)
    check(p, healthy=False, api_key=key)  # one bad key: the pool fails over, not degraded

    response = client.get("/health")

    assert response.status_code == 200
    assert set(response.json()["providers"]) == {"openai-prod"}


def test_it_reports_a_never_checked_provider_as_unknown(client, db):
    provider()

    response = client.get("/health")

    assert response.status_code == 200
    assert response.json()["providers"]["openai-prod"] == {
        "status": "unknown",
        "checked_at": None,
        "breaker": "closed",
    }


async def test_it_serves_health_to_an_async_client(async_client, transactional_db):
    response = await async_client.get("/health")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


# -- /ready -------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_it_is_ready_when_database_and_cache_answer(client, db):
    response = client.get("/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "cache": "ok"}}


def test_it_is_not_ready_when_the_cache_is_unreachable(client, db, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://:hunter2-password@127.0.0.1:{closed_port()}/0",
        }
    }

    response = client.get("/ready")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "cache": "down"},
        "down": ["cache"],
    }
    assert "hunter2" not in response.content.decode()


def test_it_is_not_ready_when_the_database_fails(client, db, monkeypatch):
    from django.db import OperationalError

    from aipk_site.infra import readiness as operations

    def broken() -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(operations, "_database_ok", broken)

    response = client.get("/ready")

    assert response.status_code == 503
    assert response.json()["down"] == ["database"]


async def test_it_gives_up_on_a_hanging_backend_after_the_timeout(
    transactional_db, monkeypatch, settings
):
    import time

    from aipk_site.infra import readiness as operations

    settings.READY_TIMEOUT_SECONDS = 0.2
    monkeypatch.setattr(operations, "_cache_ok", lambda: time.sleep(1.5))

    started = time.monotonic()
    report = await operations.areadiness()

    assert report["down"] == ["cache"]
    assert time.monotonic() - started < 1.0


# -- request id ---------------------------------------------------------------------------


@pytest.fixture
def records():
    """Records that reach a handler configured like settings.LOGGING's, as JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(SecretMaskFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    bind_request_id(None)


def test_it_generates_a_request_id_and_echoes_it(client, db):
    response = client.get("/health")

    request_id = response["x-request-id"]
    assert len(request_id) == 32 and int(request_id, 16) >= 0
    assert client.get("/health")["x-request-id"] != request_id


def test_it_keeps_a_sane_incoming_request_id(client, db):
    response = client.get("/health", headers={"x-request-id": "lb-7f3a.42:abc"})

    assert response["x-request-id"] == "lb-7f3a.42:abc"


@pytest.mark.parametrize("incoming", ["has space", "x" * 129, "<script>", "ü-nicode"])
def test_it_replaces_an_insane_incoming_request_id(client, db, incoming):
    response = client.get("/health", headers={"x-request-id": incoming})

    assert response["x-request-id"] != incoming
    assert len(response["x-request-id"]) == 32


def test_it_puts_the_request_id_on_the_requests_log_lines(client, db, settings, records):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
        }
    }

    response = client.get("/ready", headers={"x-request-id": "trace-123"})

    ours = [r for r in records() if r["logger"] == "aipk_site.infra.readiness"]
    assert ours and all(r["request_id"] == "trace-123" for r in ours)
    assert response["x-request-id"] == "trace-123"


async def test_it_keeps_concurrent_requests_ids_apart(async_client, transactional_db, records):
    log = logging.getLogger("tests.operations")

    async def request(n: int) -> None:
        bind_request_id(f"req-{n}")
        await asyncio.sleep(0.01 * (3 - n))
        log.warning("finishing %d", n)

    await asyncio.gather(*(asyncio.create_task(request(n)) for n in range(3)))

    ours = [r for r in records() if r["logger"] == "tests.operations"]
    assert {r["message"]: r["request_id"] for r in ours} == {
        f"finishing {n}": f"req-{n}" for n in range(3)
    }


# -- log lines ----------------------------------------------------------------------------


def test_it_writes_one_json_object_per_line(records):
    bind_request_id("req-42")
    logging.getLogger("aipk.test").warning(
        "usage flushed rows=%d", 3, extra={"tenant_id": 7, "detail": "multi\nline"}
    )

    [line] = [r for r in records() if r["logger"] == "aipk.test"]
    assert line["level"] == "WARNING"
    assert line["message"] == "usage flushed rows=3"
    assert line["request_id"] == "req-42"
    assert line["tenant_id"] == 7
    assert line["detail"] == "multi\nline"
    assert line["time"].endswith("Z") and "T" in line["time"]
    assert list(line)[:5] == ["time", "level", "logger", "message", "request_id"]


def test_it_writes_null_request_id_outside_a_request(records):
    logging.getLogger("aipk.test").warning("background work")

    [line] = [r for r in records() if r["logger"] == "aipk.test"]
    assert line["request_id"] is None


def test_it_masks_secrets_in_log_lines(records):
    log = logging.getLogger("aipk.test")
    log.warning("virtual key %s admin token %s", VIRTUAL_KEY, ADMIN_TOKEN)
    log.warning("upstream said Authorization: Bearer %s", PROVIDER_KEY, extra={"key": PROVIDER_KEY})
    try:
        raise ValueError(f"bad key {VIRTUAL_KEY}")
    except ValueError:
        log.exception("failed")

    lines = [r for r in records() if r["logger"] == "aipk.test"]
    text = json.dumps(lines)
    for secret in (VIRTUAL_KEY, ADMIN_TOKEN, PROVIDER_KEY):
        assert secret not in text
        assert secret[-4:] in text  # the last 4 stay, to tell keys apart
    assert (
        lines[0]["message"]
        == f"virtual key aipk-…{VIRTUAL_KEY[-4:]} admin token aipkadm-…{ADMIN_TOKEN[-4:]}"
    )
    assert lines[1]["message"] == f"upstream said Authorization: Bearer …{PROVIDER_KEY[-4:]}"
    assert "ValueError" in lines[2]["exc_info"]


def test_it_leaves_ordinary_text_alone():
    text = "task-runner disk-usage risk-assessment sk-short aipk-ok model=gpt-4o key:12"
    assert mask_secrets(text) == text


def test_it_writes_readable_lines_in_line_format():
    record = logging.LogRecord("aipk.test", logging.INFO, __file__, 1, "hello %s", ("x",), None)
    formatter = LineFormatter("level=%(levelname)s request_id=%(request_id)s %(message)s")

    assert formatter.format(record) == "level=INFO request_id=- hello x"


def _settings_in_subprocess(**env: str) -> subprocess.CompletedProcess:
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.LOGGING['handlers']['stdout']['formatter'])"
    )
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "aipk_site.settings",
        "DJANGO_SECRET_KEY": "x" * 50,
        "FERNET_KEYS": "test-key",
        **env,
    }
    if "LOG_FORMAT" not in env:
        environment.pop("LOG_FORMAT", None)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True
    )


def test_it_logs_json_in_production_and_lines_in_development():
    assert _settings_in_subprocess(DEBUG="false").stdout.strip() == "json"
    assert _settings_in_subprocess(DEBUG="true").stdout.strip() == "line"
    assert _settings_in_subprocess(DEBUG="true", LOG_FORMAT="json").stdout.strip() == "json"
    refused = _settings_in_subprocess(LOG_FORMAT="xml")
    assert refused.returncode != 0 and "LOG_FORMAT" in refused.stderr
