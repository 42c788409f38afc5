"""A provider's refusal reaches the caller as it is: the real class, HTTP status and
retry-after, whatever the number of keys and however long the retry-after -- judged by
the official openai and anthropic SDKs (max_retries=0). ``no_available_credential``
only when no upstream call was made."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import anthropic
import openai
import pytest

from providers_app.services.credentials import api_key_add

pytestmark = pytest.mark.django_db(transaction=True)

ASK = [{"role": "user", "content": "hi"}]


def openai_client(world, gateway_server) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=world.secret, base_url=gateway_server.openai_base_url, max_retries=0
    )


def anthropic_client(world, gateway_server) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=world.secret, base_url=gateway_server.url, max_retries=0)


def use_only_key(provider, secret: str) -> None:
    """Replace the provider's one key by ``secret`` (a simulator key-level fault)."""
    provider.api_keys.all().delete()
    api_key_add(provider=provider, label="only key", secret=secret)


@pytest.mark.parametrize("keys", [1, 2], ids=["one key", "two keys"])
def test_it_passes_on_a_30_second_rate_limit_as_a_rate_limit_error(world, gateway_server, keys):
    provider = world.providers["openai"]
    if keys == 2:
        api_key_add(provider=provider, label="key 2", secret="sk-sim-openai-key-0002")
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client(world, gateway_server).chat.completions.create(
            model="openai/gpt-4o-mini-fail-rate_limit-retry-30s", messages=ASK
        )
    assert caught.value.status_code == 429
    assert caught.value.body["code"] == "upstream_rate_limited"
    assert 28 <= int(caught.value.response.headers["retry-after"]) <= 30


def test_it_passes_on_geminis_40_second_retry_info(world, gateway_server):
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client(world, gateway_server).chat.completions.create(
            model="gemini/gemini-2.0-flash-fail-rate_limit-retry-40s", messages=ASK
        )
    assert 38 <= int(caught.value.response.headers["retry-after"]) <= 40


def test_it_streams_nothing_and_answers_429_when_the_stream_is_rate_limited(world, gateway_server):
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client(world, gateway_server).chat.completions.create(
            model="openai/gpt-4o-mini-fail-rate_limit-retry-30s", messages=ASK, stream=True
        )
    assert int(caught.value.response.headers["retry-after"]) >= 28


def test_it_says_no_available_credential_only_when_no_call_was_made(world, gateway_server):
    client = openai_client(world, gateway_server)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="openai/gpt-4o-mini-fail-rate_limit-retry-30s", messages=ASK
        )
    # the only key cools down for 30 s on that model: the next request for it makes no call
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="openai/gpt-4o-mini-fail-rate_limit-retry-30s", messages=ASK
        )
    assert caught.value.status_code == 503
    assert caught.value.body["code"] == "no_available_credential"
    assert int(caught.value.response.headers["retry-after"]) >= 28


def test_it_passes_on_an_invalid_provider_key_as_an_authentication_error(world, gateway_server):
    use_only_key(world.providers["openai"], "sk-sim-fail-auth-0001")
    with pytest.raises(openai.AuthenticationError) as caught:
        openai_client(world, gateway_server).chat.completions.create(
            model="openai/gpt-4o-mini", messages=ASK
        )
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "upstream_authentication_failed"
    assert "0001" not in caught.value.response.text  # nothing of the key


def test_it_passes_on_a_model_the_account_may_not_use_as_a_permission_error(world, gateway_server):
    with pytest.raises(openai.PermissionDeniedError) as caught:
        openai_client(world, gateway_server).chat.completions.create(
            model="openai/gpt-4o-mini-fail-model_permission", messages=ASK
        )
    assert caught.value.status_code == 403
    assert caught.value.body["code"] == "upstream_permission_denied"


def test_it_passes_on_insufficient_quota_as_a_rate_limit_error_with_its_code(world, gateway_server):
    use_only_key(world.providers["openai"], "sk-sim-fail-quota-0001")
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client(world, gateway_server).chat.completions.create(
            model="openai/gpt-4o-mini", messages=ASK
        )
    assert caught.value.status_code == 429
    assert caught.value.body["code"] == "upstream_quota_exceeded"
    assert caught.value.body["type"] == "insufficient_quota"


def test_it_passes_on_openrouters_402_with_its_status(world, gateway_server):
    use_only_key(world.providers["openrouter"], "sk-sim-fail-quota-0001")
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client(world, gateway_server).chat.completions.create(
            model=world.model("openrouter"), messages=ASK
        )
    assert caught.value.status_code == 402
    assert caught.value.body["code"] == "upstream_quota_exceeded"


def test_it_passes_on_a_rate_limit_in_anthropics_format(world, gateway_server):
    with pytest.raises(anthropic.RateLimitError) as caught:
        anthropic_client(world, gateway_server).messages.create(
            model="anthropic/claude-3-5-haiku-20241022-fail-rate_limit-retry-30s",
            max_tokens=50,
            messages=ASK,
        )
    assert caught.value.status_code == 429
    assert int(caught.value.response.headers["retry-after"]) >= 28


@pytest.mark.parametrize(
    ("secret", "exception", "status"),
    [
        ("sk-sim-fail-auth-0001", anthropic.AuthenticationError, 401),
        # Anthropic's billing_error comes with 402: passed on as it came
        ("sk-sim-fail-quota-0001", anthropic.APIStatusError, 402),
    ],
    ids=["401", "quota"],
)
def test_it_passes_on_key_level_refusals_in_anthropics_format(
    world, gateway_server, secret, exception, status
):
    use_only_key(world.providers["anthropic"], secret)
    with pytest.raises(exception) as caught:
        anthropic_client(world, gateway_server).messages.create(
            model=world.model("anthropic"), max_tokens=50, messages=ASK
        )
    assert caught.value.status_code == status
    # the error type Anthropic itself sends with that status
    kinds = {401: "authentication_error", 402: "billing_error"}
    assert caught.value.body["error"]["type"] == kinds[status]


def test_it_passes_on_a_model_permission_error_in_anthropics_format(world, gateway_server):
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        anthropic_client(world, gateway_server).messages.create(
            model="openai/gpt-4o-mini-fail-model_permission", max_tokens=50, messages=ASK
        )
    assert caught.value.status_code == 403


@pytest.mark.parametrize(
    ("model", "secret", "code"),
    [
        ("openai/gpt-4o-mini-fail-rate_limit-retry-30s", None, "upstream_rate_limited"),
        ("openai/gpt-4o-mini", "sk-sim-fail-auth-0001", "upstream_authentication_failed"),
        ("openai/gpt-4o-mini-fail-model_permission", None, "upstream_permission_denied"),
        ("openai/gpt-4o-mini", "sk-sim-fail-quota-0001", "upstream_quota_exceeded"),
    ],
    ids=["429", "401", "403", "quota"],
)
def test_it_names_the_upstream_refusal_in_the_websockets_chat_error(
    world, gateway_server, model, secret, code
):
    if secret:
        use_only_key(world.providers["openai"], secret)
    url = gateway_server.url.replace("http://", "ws://", 1) + "/ws/chat/"

    async def scenario():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(
                url, headers={"authorization": f"Bearer {world.secret}"}
            ) as ws:
                await ws.send_json(
                    {"type": "chat.request", "id": 1, "model": model, "messages": ASK}
                )
                while True:
                    event = json.loads((await ws.receive(timeout=20)).data)
                    if event["type"] in ("chat.error", "chat.done"):
                        return event

    event = asyncio.run(scenario())
    assert (event["type"], event["code"]) == ("chat.error", code), event
    if code == "upstream_rate_limited":
        assert 28 <= event["retry_after"] <= 30


def test_it_answers_with_what_a_provider_said_not_a_later_candidates_empty_pool(
    world, gateway_server
):
    from providers_app.models import ApiKey
    from tenants_app.models import ModelRoute

    world.providers["anthropic"].api_keys.update(state=ApiKey.State.DISABLED)
    ModelRoute.objects.create(
        alias="limited",
        candidates=[
            {"provider": "openai", "model": "gpt-4o-mini-fail-rate_limit-retry-30s"},
            {"provider": "anthropic", "model": "claude-3-5-haiku-20241022"},
        ],
    )
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client(world, gateway_server).chat.completions.create(model="limited", messages=ASK)
    assert caught.value.body["code"] == "upstream_rate_limited"
