"""Bounded metric labels: whatever model ids clients send, /metrics stays the same size.

Every label value comes from a bounded set -- configured providers, known models
(route candidates, discovered models, each provider's default model, the pricing
table), route aliases -- and anything else is counted under ``other``.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aipk_site.infra.metrics import OTHER, metric_labels_refresh

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hi"}]
# the providers' own series carry the model id; the gateway's carry the route alias
MODEL_FAMILIES = ("aipk_provider_requests", "aipk_provider_request_duration_seconds")


@pytest.fixture(autouse=True)
def _single_process(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)


def _scrape(gateway_server) -> str:
    return httpx.get(gateway_server.url + "/metrics", timeout=30).text


def _values(text: str, label: str, **match: str) -> set[str]:
    """Every value ``label`` takes in the aipk series matching ``match``."""
    values = set()
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("aipk_"):
            continue
        for sample in family.samples:
            if label in sample.labels and all(sample.labels.get(k) == v for k, v in match.items()):
                values.add(sample.labels[label])
    return values


async def _send_many(gateway_server, secret: str, models: list[str]) -> list[int]:
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(
        base_url=gateway_server.openai_base_url,
        headers={"authorization": f"Bearer {secret}"},
        timeout=60,
    ) as client:

        async def one(model: str) -> int:
            async with limit:
                reply = await client.post(
                    "/chat/completions", json={"model": model, "messages": HELLO, "max_tokens": 5}
                )
                return reply.status_code

        return await asyncio.gather(*(one(model) for model in models))


def test_it_keeps_metrics_bounded_whatever_model_ids_clients_send(world, gateway_server):
    metric_labels_refresh()
    before = _scrape(gateway_server)
    random_ids = [f"openai/random-{uuid.uuid4().hex[:12]}" for _ in range(2000)]

    statuses = asyncio.run(_send_many(gateway_server, world.secret, random_ids))
    after = _scrape(gateway_server)

    assert statuses.count(200) == len(random_ids)  # the simulator serves any model id
    models_after = _values(after, "model", provider="openai")
    new_models = models_after - _values(before, "model", provider="openai")
    print(
        f"/metrics {len(before)} -> {len(after)} bytes; "
        f"distinct openai model labels now {len(models_after)}, new {len(new_models)}"
    )
    assert new_models <= {OTHER}
    assert not any(model_id.split("/", 1)[1] in after for model_id in random_ids[:50])
    # 2,000 new ids add the "other" series at most, not 2,000 series per metric
    assert len(after) - len(before) < 20_000


def test_it_keeps_a_known_models_own_label(world, gateway_server):
    metric_labels_refresh()
    reply = httpx.post(
        gateway_server.openai_base_url + "/chat/completions",
        json={"model": world.model("openai"), "messages": HELLO, "max_tokens": 5},
        headers={"authorization": f"Bearer {world.secret}"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text

    text = _scrape(gateway_server)
    # gpt-4o-mini is the provider's default model: known, so it keeps its own label
    assert "gpt-4o-mini" in _values(text, "model", provider="openai")


def test_it_counts_an_unknown_model_under_other(world, gateway_server):
    metric_labels_refresh()
    unknown = f"made-up-{uuid.uuid4().hex[:8]}"
    reply = httpx.post(
        gateway_server.openai_base_url + "/chat/completions",
        json={"model": f"openai/{unknown}", "messages": HELLO, "max_tokens": 5},
        headers={"authorization": f"Bearer {world.secret}"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text

    text = _scrape(gateway_server)
    assert unknown not in text
    assert OTHER in _values(text, "model", provider="openai")


def test_it_labels_a_route_alias_and_counts_an_unknown_one_under_other(world, gateway_server):
    from tenants_app.services.routes import route_create

    route_create(
        tenant=world.tenant,
        alias="team-chat",
        candidates=[{"provider": "openai", "model": "gpt-4o-mini"}],
        actor=None,
    )
    metric_labels_refresh()  # other processes see a new route within the refresh period
    reply = httpx.post(
        gateway_server.openai_base_url + "/chat/completions",
        json={"model": "team-chat", "messages": HELLO, "max_tokens": 5},
        headers={"authorization": f"Bearer {world.secret}"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text

    aliases = _values(_scrape(gateway_server), "alias", provider="openai")
    assert "team-chat" in aliases


def test_it_caps_the_values_of_each_label(settings):
    from aipk_site.infra import metrics, metrics_export

    settings.METRICS_MAX_LABEL_VALUES = len(metrics._seen["code"]) + 3
    codes = [f"made_up_code_{uuid.uuid4().hex[:8]}" for _ in range(10)]
    for code in codes:
        metrics.record_gateway_request(
            endpoint="chat.completions",
            alias="",
            provider=None,
            status="refused",
            latency_ms=1,
            error_type=code,
        )

    text = metrics_export.prometheus_text().decode()
    assert sum(code in text for code in codes) == 3
    assert OTHER in _values(text, "code")
