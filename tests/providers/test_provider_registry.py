"""The registry and the rest of aipk agree: the model's choices, the settings schema, the
client-side limits the chat service builds from a profile."""

from __future__ import annotations

from typing import get_args

import pytest

from providers_app.kit.providers import PROFILES
from providers_app.kit.providers.gemini import GEMINI_TIERS
from providers_app.kit.providers.qwen import QWEN_LIMITS
from providers_app.models import Provider, ProviderType
from providers_app.services.chat import _limiter
from providers_app.services.provider_settings import GeminiTier, validate_provider_settings


def test_it_offers_every_registered_provider_as_a_type_and_nothing_else():
    assert list(ProviderType.values) == list(PROFILES)
    assert {value: str(label) for value, label in ProviderType.choices} == {
        name: profile.label for name, profile in PROFILES.items()
    }


def test_it_validates_the_gemini_tiers_the_profile_knows():
    assert set(get_args(GeminiTier)) == set(GEMINI_TIERS)


def test_it_fills_in_the_qwen_limits_from_its_profile():
    stored = validate_provider_settings("qwen", {})
    assert stored["requests_per_minute"] == QWEN_LIMITS.per_minute == 60
    assert stored["requests_per_day"] == QWEN_LIMITS.per_day == 2000


def test_it_gives_a_client_side_bucket_only_to_providers_without_rate_limit_headers():
    for name, profile in PROFILES.items():
        bucket = _limiter(Provider(name=name, type=name, settings={}), "key-1")
        assert (bucket is None) == profile.sends_rate_limit_headers, name


def test_it_sizes_the_buckets_from_the_provider_settings():
    qwen = _limiter(Provider(type="qwen", settings={}), "k")
    assert qwen is not None and (qwen.per_minute, qwen.per_day) == (60, 2000)
    tuned = _limiter(
        Provider(type="qwen", settings={"requests_per_minute": 5, "requests_per_day": 50}), "k"
    )
    assert tuned is not None and (tuned.per_minute, tuned.per_day) == (5, 50)
    free = _limiter(Provider(type="gemini", settings={}), "k")
    assert free is not None and (free.per_minute, free.per_day) == (15, 1500)
    tier1 = _limiter(Provider(type="gemini", settings={"rate_limit_tier": "tier1"}), "k")
    assert tier1 is not None and (tier1.per_minute, tier1.per_day) == (2000, None)


def test_it_reads_the_structured_retry_hint_of_an_error_body_where_the_profile_has_one():
    body = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "40s"}],
        }
    }
    hooks = {name: p.retry_after_from_error for name, p in PROFILES.items()}
    assert hooks["gemini"] is not None and hooks["gemini"](body) == 40.0
    assert {name for name, hook in hooks.items() if hook is not None} == {"gemini"}


@pytest.mark.django_db
def test_it_bounds_an_unknown_models_reply_by_its_providers_documented_maximum():
    # sync, with the coroutine run by async_to_sync: its queries then use this thread's
    # connection, inside the test's transaction (rolled back after)
    from asgiref.sync import async_to_sync

    from tenants_app.services.pricing import amax_output_tokens

    expected = {
        "openai": 128_000,
        "anthropic": 64_000,
        "gemini": 65_536,
        "qwen": 65_536,
        "cerebras": 131_072,
        "openrouter": 131_072,
        "openai-compatible": 131_072,
    }
    assert set(expected) == set(PROFILES)
    for provider_type, tokens in expected.items():
        provider = Provider.objects.create(name=f"p-{provider_type}", type=provider_type)
        known = async_to_sync(amax_output_tokens)(provider, "a-model-nobody-catalogued")
        assert known == (tokens, False)
