"""Request metrics: recording, /metrics (Prometheus text), /metrics.json, several processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from aipk_site.infra.metrics import credential_label, record_refresh, record_request
from aipk_site.infra.metrics_export import histogram_quantile, metrics_summary

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def provider_name() -> str:
    """The registry lives as long as the process: every test counts under its own provider."""
    return f"metrics-{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def _single_process(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)


def _samples(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _provider(summary: dict, name: str) -> dict:
    return next(p for p in summary["providers"] if p["provider"] == name)


def _record_traffic(provider: str) -> None:
    # key:1 -- 10 successes: 9 fast (100 ms), 1 slow (900 ms)
    for latency in [100] * 9 + [900]:
        record_request(
            provider=provider,
            credential_id="key:1",
            model="gpt-4o",
            status="success",
            latency_ms=latency,
            prompt_tokens=10,
            completion_tokens=5,
        )
    # key:2 -- a rate limit and a server error
    record_request(
        provider=provider,
        credential_id="key:2",
        model="gpt-4o",
        status="error",
        error_type="rate_limit_error",
        latency_ms=50,
    )
    record_request(
        provider=provider,
        credential_id="key:2",
        model="gpt-4o-mini",
        status="error",
        error_type="server_error",
        latency_ms=250,
    )


def test_it_exports_recorded_requests_in_prometheus_text(client, provider_name):
    _record_traffic(provider_name)
    record_refresh(provider=provider_name, credential_id="oauth:7", ok=True)
    record_refresh(provider=provider_name, credential_id="oauth:7", ok=False)

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == CONTENT_TYPE_LATEST
    text = response.content.decode()
    p = {"provider": provider_name}
    assert _samples(text, "aipk_provider_requests_total", **p) == 12
    assert (
        _samples(text, "aipk_provider_requests_total", **p, credential="key:1", status="success")
        == 10
    )
    assert _samples(text, "aipk_provider_errors_total", **p, error_type="rate_limit_error") == 1
    assert _samples(text, "aipk_provider_errors_total", **p, error_type="server_error") == 1
    assert _samples(text, "aipk_provider_tokens_total", **p, kind="prompt") == 100
    assert _samples(text, "aipk_provider_tokens_total", **p, kind="completion") == 50
    assert _samples(text, "aipk_provider_request_duration_seconds_count", **p) == 12
    assert _samples(text, "aipk_provider_request_duration_seconds_sum", **p) == pytest.approx(2.1)
    assert _samples(text, "aipk_credential_token_refreshes_total", **p, outcome="success") == 1
    assert _samples(text, "aipk_credential_token_refreshes_total", **p, outcome="failure") == 1


def test_it_serves_the_same_figures_as_json_with_average_and_p95(client, provider_name):
    _record_traffic(provider_name)
    response = client.get("/metrics.json")
    assert response.status_code == 200
    provider = _provider(response.json(), provider_name)

    assert (provider["requests"], provider["successes"], provider["errors"]) == (12, 10, 2)
    assert provider["errors_by_type"] == {"rate_limit_error": 1, "server_error": 1}
    assert provider["tokens"] == {"prompt": 100, "completion": 50}
    assert provider["latency_ms"]["average"] == pytest.approx(2100 / 12)

    key1, key2 = provider["credentials"]
    assert (key1["credential"], key1["requests"], key1["successes"], key1["errors"]) == (
        "key:1",
        10,
        10,
        0,
    )
    assert (key2["credential"], key2["requests"], key2["successes"], key2["errors"]) == (
        "key:2",
        2,
        0,
        2,
    )
    assert key1["latency_ms"]["average"] == pytest.approx(180.0)
    assert key2["latency_ms"]["average"] == pytest.approx(150.0)
    # p95 of key:1: rank 9.5 of 10 lies in the (750 ms, 1 s] bucket holding the one 900 ms
    # request, half-way in: 750 + 250 * 0.5
    assert key1["latency_ms"]["p95"] == pytest.approx(875.0)
    # p95 of the provider: rank 11.4 of 12 -> the same bucket (11 below it, 1 in it)
    assert provider["latency_ms"]["p95"] == pytest.approx(750 + 250 * 0.4)
    # key:2: 50 ms and 250 ms -> rank 1.9 in (200, 300]: 200 + 100 * 0.9
    assert key2["latency_ms"]["p95"] == pytest.approx(290.0)


def test_p95_tracks_the_slow_tail(provider_name):
    for latency in [40] * 90 + [2500] * 10:
        record_request(
            provider=provider_name,
            credential_id="key:3",
            model="m",
            status="success",
            latency_ms=latency,
        )
    figures = _provider(metrics_summary(), provider_name)["latency_ms"]
    assert 2000 < figures["p95"] <= 3000
    assert figures["average"] == pytest.approx(286.0)


def test_a_provider_without_latencies_has_no_average_or_p95(provider_name):
    record_refresh(provider=provider_name, credential_id="oauth:1", ok=True)
    figures = _provider(metrics_summary(), provider_name)
    assert figures["latency_ms"] == {"average": None, "p95": None}
    assert figures["refreshes"] == {"success": 1, "failure": 0}


def test_labels_never_carry_a_secret(provider_name):
    with pytest.raises(ValueError):
        record_request(
            provider=provider_name,
            credential_id="sk-live-very-secret",
            model="m",
            status="success",
            latency_ms=1,
        )
    with pytest.raises(ValueError):
        record_request(
            provider=provider_name, credential_id="key:1", model="m", status="fine", latency_ms=1
        )
    assert credential_label(None) == "none"
    assert credential_label("oauth:12") == "oauth:12"


def test_an_odd_error_type_is_counted_under_a_fixed_label(provider_name):
    record_request(
        provider=provider_name,
        credential_id="key:1",
        model="m",
        status="error",
        error_type="Something {weird}\n",
        latency_ms=5,
    )
    assert _provider(metrics_summary(), provider_name)["errors_by_type"] == {"unknown_error": 1}


@pytest.mark.django_db
def test_credential_labels_come_from_model_ids(make_provider):
    from providers_app.models import OAuthCredential
    from providers_app.services.provider_metrics import credential_label

    provider = make_provider("openai", keys=1)
    key = provider.api_keys.get()
    oauth = OAuthCredential.objects.create(
        provider=provider, account_label="a", access_token="tok-0000"
    )
    assert credential_label(key) == f"key:{key.pk}"
    assert credential_label(oauth) == f"oauth:{oauth.pk}"


def test_histogram_quantile_matches_prometheus():
    inf = float("inf")
    assert histogram_quantile(0.95, {}) is None
    assert histogram_quantile(0.95, {0.1: 0, inf: 0}) is None
    assert histogram_quantile(0.5, {0.1: 10, 0.2: 20, inf: 20}) == pytest.approx(0.1)
    # beyond the largest finite bucket: that bound
    assert histogram_quantile(0.95, {0.1: 1, 0.2: 1, inf: 10}) == 0.2


RECORDER = textwrap.dedent(
    """
    import os, sys
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aipk_site.settings")
    import django
    django.setup()
    from aipk_site.infra.metrics import record_request, record_refresh
    provider, credential = sys.argv[1], sys.argv[2]
    count, latency = int(sys.argv[3]), float(sys.argv[4])
    for _ in range(count):
        record_request(provider=provider, credential_id=credential, model="gpt-4o",
                       status="success", latency_ms=latency, prompt_tokens=3, completion_tokens=2)
    record_request(provider=provider, credential_id=credential, model="gpt-4o", status="error",
                   error_type="overloaded_error", latency_ms=latency)
    record_refresh(provider=provider, credential_id="oauth:1", ok=True)
    print(os.getpid())
    """
)


def test_several_processes_add_up_in_multiprocess_mode(
    client, tmp_path, monkeypatch, provider_name
):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    env.pop("prometheus_multiproc_dir", None)
    runs = [("key:1", "4", "120"), ("key:2", "6", "480")]
    pids = set()
    for credential, count, latency in runs:
        done = subprocess.run(
            [sys.executable, "-c", RECORDER, provider_name, credential, count, latency],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        pids.add(done.stdout.strip().splitlines()[-1])
    assert len(pids) == 2
    assert len(list(tmp_path.glob("counter_*.db"))) == 2  # one file per process

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    text = client.get("/metrics").content.decode()
    p = {"provider": provider_name}
    assert _samples(text, "aipk_provider_requests_total", **p, status="success") == 10
    assert _samples(text, "aipk_provider_requests_total", **p, status="error") == 2
    assert _samples(text, "aipk_provider_tokens_total", **p, kind="prompt") == 30
    assert _samples(text, "aipk_credential_token_refreshes_total", **p) == 2
    assert _samples(text, "aipk_provider_request_duration_seconds_count", **p) == 12

    summary = client.get("/metrics.json").json()
    assert summary["multiprocess"] is True
    provider = _provider(summary, provider_name)
    assert (provider["requests"], provider["successes"], provider["errors_by_type"]) == (
        12,
        10,
        {"overloaded_error": 2},
    )
    assert provider["latency_ms"]["average"] == pytest.approx((5 * 120 + 7 * 480) / 12)
    by_credential = {c["credential"]: c for c in provider["credentials"]}
    assert by_credential["key:1"]["requests"] == 5 and by_credential["key:2"]["requests"] == 7
    assert by_credential["key:1"]["latency_ms"]["average"] == pytest.approx(120.0)
