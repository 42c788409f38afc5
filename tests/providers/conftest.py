"""Providers pointed at the simulator, for the provider tests."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connections

from providers_app.models import OAuthCredential
from providers_app.services.credentials import api_key_add
from providers_app.services.oauth import oauth_callback, oauth_start
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
            api_key_add(
                provider=provider, label=f"key {n}", secret=f"sk-sim-{provider_type}-key-{n:04d}"
            )
        return provider

    return make


@pytest.fixture
async def close_db_thread():
    """Close sync_to_async's worker-thread connection, so the test database can be dropped."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
def connect(make_provider, simulator):
    """connect(expires_in=1) → the OAuth credential of a new provider (sync)."""

    def make(
        *, expires_in: int | None = None, token_query: str = "", provider_type: str = "openai"
    ):
        name = f"{provider_type}-{secrets.token_hex(3)}"
        provider = make_provider(
            provider_type,
            name=name,
            keys=0,
            oauth_client_id=f"sim-{name}",
            oauth_authorize_url=simulator.url
            + "/oauth/authorize"
            + (f"?expires_in={expires_in}" if expires_in is not None else ""),
            oauth_token_url=simulator.url + "/oauth/token" + token_query,
        )
        url = oauth_start(
            provider=provider, redirect_uri=f"http://testserver/oauth/callback/{name}/"
        )
        location = httpx.get(url, follow_redirects=False).headers["location"]
        params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        result = async_to_sync(oauth_callback)(provider_name=name, params=params)
        return OAuthCredential.objects.select_related("provider").get(pk=result.credential.pk)

    return make
