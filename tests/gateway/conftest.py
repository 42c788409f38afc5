"""Gateway tests: the shared cast (tests/cast.py), and a tenant wired to every provider on
the simulator for tests against the real aipk server (``gateway_server``, defined in
tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.cast import *  # noqa: F403 -- the shared cast (tenants, members, tokens)

PROVIDER_TYPES = ("openai", "anthropic", "gemini", "cerebras", "qwen", "openrouter")
SIMULATOR_PATHS = {
    "openai": "/openai/v1",
    "anthropic": "/anthropic",
    "gemini": "/gemini",
    "cerebras": "/cerebras/v1",
    "qwen": "/qwen/v1",
    "openrouter": "/openrouter/api/v1",
    "openai-compatible": "/openai/v1",
}
# a model id each provider type is called with in these tests
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-haiku-20241022",
    "gemini": "gemini-2.0-flash",
    "cerebras": "llama3.1-8b",
    "qwen": "qwen-plus",
    "openrouter": "openai/gpt-4o-mini",
    "openai-compatible": "llama-3.1-8b-instant",
}


@dataclass
class World:
    """A tenant with a virtual key, and one provider of every type on the simulator."""

    tenant: object
    key: object
    secret: str
    providers: dict  # type → Provider

    def model(self, provider_type: str) -> str:
        return f"{self.providers[provider_type].name}/{MODELS[provider_type]}"


def _clear_caches() -> None:
    from django.core.cache import cache

    from aipk_site.gateway.key_auth import key_auth_cache_clear
    from aipk_site.gateway.routing import routing_cache_clear
    from providers_app.services.chat import credentials_cache_clear
    from tenants_app.services.pricing import pricing_cache_clear

    cache.clear()
    key_auth_cache_clear()
    credentials_cache_clear()
    pricing_cache_clear()
    routing_cache_clear()


@pytest.fixture
def make_key():
    """make_key(tenant, **limits) → (VirtualKey, secret)."""
    from tenants_app.models import VirtualKey
    from tenants_app.services.secrets import VIRTUAL_KEY_PREFIX, new_secret

    def make(tenant, name: str = "test key", **fields):
        secret, key_hash, prefix = new_secret(VIRTUAL_KEY_PREFIX)
        key = VirtualKey.objects.create(
            tenant=tenant, name=name, prefix=prefix, key_hash=key_hash, **fields
        )
        return key, secret

    return make


@pytest.fixture
def world(transactional_db, simulator, gateway_server, make_key) -> Iterator[World]:
    from providers_app.services.credentials import api_key_add
    from providers_app.services.providers import provider_create
    from tenants_app.models import Tenant

    _clear_caches()
    providers = {}
    for provider_type in (*PROVIDER_TYPES, "openai-compatible"):
        name = "groq" if provider_type == "openai-compatible" else provider_type
        provider = provider_create(
            name=name,
            type=provider_type,
            base_url=simulator.url + SIMULATOR_PATHS[provider_type],
            default_model=MODELS[provider_type],
        )
        api_key_add(provider=provider, label="key 1", secret=f"sk-sim-{name}-key-0001")
        providers[provider_type] = provider
    tenant = Tenant.objects.create(name="Acme", slug="acme")
    key, secret = make_key(tenant)
    yield World(tenant=tenant, key=key, secret=secret, providers=providers)
    from aipk_site.gateway.request_bodies import request_bodies_flush
    from aipk_site.gateway.response_store import responses_flush, responses_forget_recent
    from aipk_site.gateway.usage import usage_flush

    usage_flush()
    responses_flush()  # before the database is emptied, as the usage rows
    request_bodies_flush()  # hB: the request log's captured bodies, likewise
    responses_forget_recent()
    _clear_caches()
