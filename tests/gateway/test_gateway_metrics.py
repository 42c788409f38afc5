"""Gateway metrics and log context, through the live server: /metrics after real requests."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest
from django.db.models import Sum
from prometheus_client.parser import text_string_to_metric_families

from aipk_site.gateway.usage import usage_flush
from aipk_site.infra.log_context import JsonFormatter, RequestIdFilter, SecretMaskFilter
from tenants_app.models import Pricing, UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(autouse=True)
def _single_process(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)


def post(gateway_server, secret, body, path="/chat/completions", **kwargs):
    return httpx.post(
        gateway_server.openai_base_url + path,
        json=body,
        headers={"authorization": f"Bearer {secret}", "anthropic-version": "2023-06-01"},
        timeout=30,
        **kwargs,
    )


def metric(gateway_server, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples matching ``labels``, as /metrics exports them now."""
    text = httpx.get(gateway_server.url + "/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_it_counts_requests_tokens_cost_and_latency(world, gateway_server):
    def figures():
        return {
            "requests": metric(
                gateway_server,
                "aipk_gateway_requests_total",
                endpoint="chat.completions",
                alias="direct",
                provider="openai",
                status="success",
            ),
            "messages": metric(
                gateway_server,
                "aipk_gateway_requests_total",
                endpoint="messages",
                provider="anthropic",
                status="success",
            ),
            "prompt": metric(
                gateway_server, "aipk_gateway_tokens_total", provider="openai", kind="prompt"
            ),
            "completion": metric(
                gateway_server, "aipk_gateway_tokens_total", provider="openai", kind="completion"
            ),
            "latency": metric(
                gateway_server,
                "aipk_gateway_request_duration_seconds_count",
                endpoint="chat.completions",
                provider="openai",
            ),
            "ttft": metric(
                gateway_server,
                "aipk_gateway_ttft_seconds_count",
                endpoint="chat.completions",
                provider="openai",
            ),
            "cost": metric(gateway_server, "aipk_gateway_cost_usd_total", provider="openai"),
        }

    Pricing.objects.update_or_create(
        provider_type="openai",
        provider=None,
        model="gpt-4o-mini",
        defaults={"input_per_million": 1, "output_per_million": 2},
    )
    before = figures()
    reply = post(gateway_server, world.secret, {"model": "openai/gpt-4o-mini", "messages": HELLO})
    assert reply.status_code == 200, reply.text
    streamed = post(
        gateway_server,
        world.secret,
        {"model": "openai/gpt-4o-mini", "messages": HELLO, "stream": True},
    )
    assert streamed.status_code == 200
    anthropic = post(
        gateway_server,
        world.secret,
        {"model": "anthropic/claude-3-5-haiku-20241022", "max_tokens": 50, "messages": HELLO},
        path="/messages",
    )
    assert anthropic.status_code == 200, anthropic.text
    after = figures()

    usage = reply.json()["usage"]
    assert after["requests"] - before["requests"] == 2
    assert after["messages"] - before["messages"] == 1
    assert after["prompt"] - before["prompt"] >= usage["prompt_tokens"] * 2 - 1
    assert after["completion"] - before["completion"] >= usage["completion_tokens"]
    assert after["latency"] - before["latency"] == 2
    assert after["ttft"] - before["ttft"] == 2
    usage_flush()
    recorded = UsageRecord.objects.filter(provider_name="openai").aggregate(Sum("cost_usd"))
    assert recorded["cost_usd__sum"] > 0
    assert after["cost"] - before["cost"] == pytest.approx(float(recorded["cost_usd__sum"]))
    text = httpx.get(gateway_server.url + "/metrics", timeout=10).text
    assert reply.headers["x-request-id"] not in text


def test_it_counts_a_refusal_under_its_limit_code(world, gateway_server, make_key):
    _, secret = make_key(world.tenant, name="one a minute", rpm=1)

    def refused(code: str) -> float:
        return metric(
            gateway_server, "aipk_gateway_refusals_total", endpoint="chat.completions", code=code
        )

    before_rpm, before_unknown = refused("key_rpm"), refused("model_not_found")
    body = {"model": "openai/gpt-4o-mini", "messages": HELLO}
    assert post(gateway_server, secret, body).status_code == 200
    assert post(gateway_server, secret, body).status_code == 429
    unknown = post(gateway_server, world.secret, {"model": "nope-x1y2z3", "messages": HELLO})
    assert unknown.status_code == 404

    assert refused("key_rpm") - before_rpm == 1
    assert refused("model_not_found") - before_unknown == 1
    text = httpx.get(gateway_server.url + "/metrics", timeout=10).text
    assert "nope-x1y2z3" not in text  # the client's model string is never a label
    assert 'alias="unknown"' in text


def test_it_counts_a_provider_error_by_type(world, gateway_server):
    def errors() -> float:
        return metric(
            gateway_server,
            "aipk_gateway_errors_total",
            endpoint="chat.completions",
            provider="openai",
            error_type="invalid_request_error",
        )

    before = errors()
    body = {"model": "openai/gpt-4o-mini-fail-bad_request", "messages": HELLO}
    assert post(gateway_server, world.secret, body).status_code == 400

    assert errors() - before == 1


def test_it_counts_a_cache_hit(world, gateway_server, make_key):
    _, secret = make_key(world.tenant, name="cached", cache_enabled=True, cache_ttl_seconds=60)

    def hits() -> float:
        return metric(gateway_server, "aipk_gateway_cache_hits_total", endpoint="chat.completions")

    before = hits()
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "cache me"}]}
    assert post(gateway_server, secret, body).headers["x-aipk-cache"] == "miss"
    assert post(gateway_server, secret, body).headers["x-aipk-cache"] == "hit"

    assert hits() - before == 1
    summary = httpx.get(gateway_server.url + "/metrics.json", timeout=10).json()["gateway"]
    assert summary["cache_hits"] >= 1 and summary["requests"] >= 2


def test_it_shows_an_open_stream_in_the_active_streams_gauge(world, gateway_server):
    def active() -> float:
        return metric(gateway_server, "aipk_gateway_active_streams", endpoint="chat.completions")

    before = active()
    body = {"model": "openai/gpt-4o-mini-delay-300ms", "messages": HELLO, "stream": True}
    with httpx.stream(
        "POST",
        gateway_server.openai_base_url + "/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {world.secret}"},
        timeout=30,
    ) as response:
        lines = response.iter_lines()
        next(line for line in lines if line.startswith("data:"))
        during = active()
        rest = list(lines)
    assert any("[DONE]" in line for line in rest)

    assert during - before == 1
    assert active() == before


def test_it_puts_the_gateways_request_id_on_its_log_lines(world, gateway_server):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(SecretMaskFilter())
    handler.setFormatter(JsonFormatter())
    request_log = logging.getLogger("aipk.gateway.requests")
    level = request_log.level
    request_log.setLevel(logging.INFO)
    request_log.addHandler(handler)
    try:
        reply = post(
            gateway_server, world.secret, {"model": "openai/gpt-4o-mini", "messages": HELLO}
        )
        # a secret that reaches a log line by mistake is masked on the way out
        logging.getLogger("aipk.gateway.requests").warning("caller sent %s", world.secret)
    finally:
        request_log.removeHandler(handler)
        request_log.setLevel(level)

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    [line] = [entry for entry in lines if entry["message"].startswith("gateway request")]
    assert line["request_id"] == reply.headers["x-request-id"] == reply.json()["id"]
    assert (line["endpoint"], line["status"], line["provider"]) == (
        "chat.completions",
        "success",
        "openai",
    )
    assert line["prompt_tokens"] == reply.json()["usage"]["prompt_tokens"]
    assert world.secret not in stream.getvalue()
    assert f"aipk-…{world.secret[-4:]}" in stream.getvalue()
