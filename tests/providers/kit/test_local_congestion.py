"""When aipk's own connection pool is full, the provider was never asked: that is neither
the credential's nor the provider's fault, and must not open the breaker."""

from __future__ import annotations

import httpx
import pytest

from providers_app.kit.adapters import ProviderConfig
from providers_app.kit.errors import LocalCongestionError
from providers_app.kit.providers import create_adapter
from providers_app.kit.resilience import (
    CircuitBreaker,
    KeyPool,
    MemoryStateStore,
    call_with_failover,
)
from providers_app.kit.types import ChatRequest, Message


def ask(model: str, words: int = 1) -> ChatRequest:
    return ChatRequest(
        model=model, messages=[Message(role="user", content=" ".join(["w"] * words))]
    )


async def test_it_reports_a_full_local_pool_as_congestion_not_a_timeout(simulator):
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=1))
    adapter = create_adapter(
        "openai",
        ProviderConfig(base_url=simulator.url + "/openai/v1", api_key="sk-test-0001", timeout=0.3),
        client=client,
    )
    busy = adapter.stream(ask("gpt-4o-mini-delay-50ms", words=40))  # holds the only connection
    try:
        assert (await busy.__anext__()) is not None
        with pytest.raises(LocalCongestionError) as caught:
            await adapter.chat(ask("gpt-4o-mini"))
        assert caught.value.type == "local_congestion" and not caught.value.retryable
    finally:
        await busy.aclose()
        await client.aclose()


async def test_it_holds_congestion_against_neither_the_credential_nor_the_breaker():
    store = MemoryStateStore()
    pool = KeyPool(store, "p1")
    breaker = CircuitBreaker(store, "p1", failure_threshold=1)

    async def congested(credential: str):
        raise LocalCongestionError("pool full", provider="p1")

    for _ in range(3):
        with pytest.raises(LocalCongestionError):
            await call_with_failover(
                pool=pool, candidates=["key:1"], operation=congested, breaker=breaker
            )
    assert await breaker.state() == "closed"
    assert await store.get(pool.credential_key("key:1")) is None
