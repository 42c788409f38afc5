"""Providers pointed at the simulator, for the provider tests."""

from __future__ import annotations

import pytest

from providers_app.services.credentials import api_key_add
from providers_app.services.providers import provider_create

SIMULATOR_PATHS = {
    "openai": "/openai/v1",
    "anthropic": "/anthropic",
    "gemini": "/gemini",
    "cerebras": "/cerebras/v1",
    "qwen": "/qwen/v1",
    "openrouter": "/openrouter/api/v1",
    "openai-compatible": "/openai/v1",
}


@pytest.fixture
def make_provider(simulator, db):
    """make_provider("openai", keys=2) → a Provider on the simulator with that many API keys."""

    def make(provider_type: str = "openai", *, name: str | None = None, keys: int = 1, **fields):
        provider = provider_create(
            name=name or f"{provider_type}-sim",
            type=provider_type,
            base_url=simulator.url + SIMULATOR_PATHS[provider_type],
            **fields,
        )
        for n in range(1, keys + 1):
            api_key_add(provider=provider, label=f"key {n}", secret=f"sk-sim-{provider_type}-key-{n:04d}")
        return provider

    return make
