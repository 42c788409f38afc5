"""The request log, driven through the real gateway: each request's usage row holds the
candidates it tried (failover across two providers on the simulator shows both), refused
requests are in it, and a tenant or key that captures bodies gets them -- redacted,
without any secret, cut to the cap -- while everyone else gets none."""

from __future__ import annotations

import json

import httpx
import pytest

from aipk_site.gateway.request_bodies import request_bodies_flush
from aipk_site.gateway.usage import usage_flush
from providers_app.models import ApiKey
from tenants_app.models import ModelRoute, RequestBody, Tenant, UsageRecord, VirtualKey

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello there"}]
# a provider-key-shaped string a user pastes into a message, and an email address
PASTED_KEY = "sk-proj-Zq81LmXc2vBn4Tr7Yp0Ws5Ke3Hd9Gf6A"
LEAKY = [
    {
        "role": "user",
        "content": f"My key is {PASTED_KEY}, write to ada@example.com or call +44 20 7946 0958",
    }
]


def post(gateway_server, secret, body, headers=None):
    return httpx.post(
        gateway_server.openai_base_url + "/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {secret}", **(headers or {})},
        timeout=30,
    )


def flushed() -> None:
    usage_flush()
    request_bodies_flush()


def failover_route(tenant: Tenant) -> None:
    """ "smart": OpenAI refuses its model (403 for that model only), Anthropic answers."""
    ModelRoute.objects.create(
        tenant=tenant,
        alias="smart",
        candidates=[
            {"provider": "openai", "model": "gpt-4o-mini-fail-model_permission"},
            {"provider": "anthropic", "model": "claude-3-5-haiku-20241022"},
        ],
    )


def credential_of(world, provider_type: str) -> str:
    credential = ApiKey.objects.get(provider=world.providers[provider_type])
    return f"key:{credential.pk}"


# -- attempts -----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_it_records_both_candidates_of_a_failover(world, gateway_server, stream):
    failover_route(world.tenant)
    reply = post(
        gateway_server, world.secret, {"model": "smart", "messages": HELLO, "stream": stream}
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-aipk-provider"] == "anthropic"
    flushed()
    record = UsageRecord.objects.get(request_id=reply.headers["x-request-id"])
    assert (record.alias, record.provider_name, record.status) == ("smart", "anthropic", "success")
    first, second = record.attempts
    assert first["provider"] == "openai" and first["model"] == "gpt-4o-mini-fail-model_permission"
    assert (first["status"], first["http_status"], first["error_type"]) == (
        "error",
        403,
        "permission_error",
    )
    assert first["answered"] is False
    assert first["credential_id"] == credential_of(world, "openai")
    assert second["provider"] == "anthropic" and second["model"] == "claude-3-5-haiku-20241022"
    assert (second["status"], second["answered"], second["error_type"]) == ("answered", True, "")
    assert second["credential_id"] == credential_of(world, "anthropic") == record.credential_id
    assert all(a["latency_ms"] >= 0 for a in record.attempts)
    assert record.ttft_ms is not None and record.latency_ms >= record.attempts[-1]["latency_ms"]


def test_it_records_one_attempt_for_a_direct_call(world, gateway_server):
    reply = post(gateway_server, world.secret, {"model": "openai/gpt-4o-mini", "messages": HELLO})
    assert reply.status_code == 200
    flushed()
    [attempt] = UsageRecord.objects.get().attempts
    assert (attempt["provider"], attempt["status"]) == ("openai", "answered")


def test_it_records_a_candidate_skipped_for_a_field_its_provider_cannot_take(world, gateway_server):
    ModelRoute.objects.create(
        tenant=world.tenant,
        alias="mixed",
        candidates=[
            {"provider": "anthropic", "model": "claude-3-5-haiku-20241022"},
            {"provider": "openai", "model": "gpt-4o-mini"},
        ],
    )
    reply = post(
        gateway_server, world.secret, {"model": "mixed", "messages": HELLO, "logprobs": True}
    )
    assert reply.status_code == 200, reply.text
    flushed()
    skipped, answered = UsageRecord.objects.get().attempts
    assert (skipped["provider"], skipped["status"], skipped["credential_id"]) == (
        "anthropic",
        "skipped",
        "",
    )
    assert skipped["error_type"] and skipped["http_status"] is None
    assert (answered["provider"], answered["status"]) == ("openai", "answered")


def test_it_records_the_attempt_that_failed_the_request(world, gateway_server):
    reply = post(
        gateway_server,
        world.secret,
        {"model": "openai/gpt-4o-mini-fail-server", "messages": HELLO},
    )
    assert reply.status_code >= 500
    flushed()
    record = UsageRecord.objects.get()
    assert record.status == "error"
    assert [a["status"] for a in record.attempts] == ["error"]
    assert record.attempts[0]["http_status"] == 500
    assert record.attempts[0]["error_type"] == record.error_type


def test_it_never_stores_a_credential_secret_in_the_attempts(world, gateway_server):
    failover_route(world.tenant)
    post(gateway_server, world.secret, {"model": "smart", "messages": HELLO})
    flushed()
    stored = json.dumps(list(UsageRecord.objects.values()), default=str)
    for name in ("openai", "anthropic"):
        assert f"sk-sim-{name}-key-0001" not in stored
    assert world.secret not in stored


# -- refused requests -----------------------------------------------------------------------


def test_it_logs_an_admission_refusal_without_attempts(world, gateway_server, make_key):
    _key, secret = make_key(world.tenant, name="one a minute", rpm=1)
    assert post(
        gateway_server, secret, {"model": "openai/gpt-4o-mini", "messages": HELLO}
    ).is_success
    refused = post(gateway_server, secret, {"model": "openai/gpt-4o-mini", "messages": HELLO})
    assert refused.status_code == 429
    flushed()
    record = UsageRecord.objects.get(request_id=refused.headers["x-request-id"])
    assert (record.status, record.attempts) == ("refused", [])
    assert record.error_type


def test_it_logs_a_refused_model_without_attempts(world, gateway_server):
    refused = post(gateway_server, world.secret, {"model": "no-such-alias", "messages": HELLO})
    assert refused.status_code == 404
    flushed()
    record = UsageRecord.objects.get(request_id=refused.headers["x-request-id"])
    assert (record.status, record.attempts, record.model) == ("refused", [], "no-such-alias")


def test_it_cannot_log_a_request_whose_key_is_unknown(world, gateway_server):
    """No tenant is known for a wrong key: there is no tenant whose log it could join."""
    refused = post(gateway_server, "aipk-not-a-real-key", {"model": "smart", "messages": HELLO})
    assert refused.status_code == 401
    flushed()
    assert not UsageRecord.objects.exists()


# -- captured bodies ------------------------------------------------------------------------


def test_it_captures_no_body_by_default(world, gateway_server):
    reply = post(gateway_server, world.secret, {"model": "openai/gpt-4o-mini", "messages": LEAKY})
    assert reply.status_code == 200
    flushed()
    assert UsageRecord.objects.count() == 1
    assert not RequestBody.objects.exists()


def capture_for_key(world, value: bool | None) -> None:
    from aipk_site.gateway.key_auth import key_auth_forget

    VirtualKey.objects.filter(pk=world.key.pk).update(capture_bodies=value)
    key_auth_forget(world.key.key_hash)


def capture_for_tenant(world, value: bool) -> None:
    from aipk_site.gateway.key_auth import key_auth_forget_tenant

    Tenant.objects.filter(pk=world.tenant.pk).update(capture_bodies=value)
    key_auth_forget_tenant(world.tenant.pk)


def test_it_captures_a_keys_request_and_answer_redacted(world, gateway_server):
    capture_for_key(world, True)
    reply = post(gateway_server, world.secret, {"model": "openai/gpt-4o-mini", "messages": LEAKY})
    assert reply.status_code == 200
    answer = reply.json()["choices"][0]["message"]["content"]
    assert PASTED_KEY in answer  # the simulator echoes the message: the answer holds it too
    flushed()
    body = RequestBody.objects.get(request_id=reply.headers["x-request-id"])
    assert body.tenant_id == world.tenant.pk
    request = json.loads(body.request)
    assert request["model"] == "openai/gpt-4o-mini"
    assert request["messages"] == [
        {"role": "user", "content": "My key is [SECRET], write to [EMAIL] or call [PHONE]"}
    ]
    assert (
        body.response == "Simulated reply to: My key is [SECRET], write to [EMAIL] or call [PHONE]"
    )
    assert not body.request_truncated and not body.response_truncated
    assert (body.expires_at - body.created_at).days == 7


def test_it_never_captures_a_secret(world, gateway_server):
    capture_for_key(world, True)
    reply = post(
        gateway_server,
        world.secret,
        {
            "model": "openai/gpt-4o-mini",
            # the caller's own aipk key pasted into an earlier turn is masked as well
            "messages": [{"role": "user", "content": f"old key {world.secret}"}, *LEAKY],
        },
        # headers outside the allow-list are kept by name only
        headers={"x-api-key": world.secret, "x-extra": f"Bearer {PASTED_KEY}"},
    )
    assert reply.status_code == 200
    flushed()
    stored = json.dumps(list(RequestBody.objects.values()), default=str)
    stored += json.dumps(list(UsageRecord.objects.values()), default=str)
    assert PASTED_KEY not in stored
    assert world.secret not in stored and world.key.key_hash not in stored
    assert "sk-sim-openai-key-0001" not in stored
    assert "ada@example.com" not in stored
    assert "bearer" not in stored.lower()
    headers = RequestBody.objects.get().headers
    assert headers["authorization"] == headers["x-api-key"] == headers["x-extra"] == "(not shown)"


def test_it_keeps_the_clients_headers_and_only_names_the_others(world, gateway_server):
    capture_for_key(world, True)
    reply = post(
        gateway_server,
        world.secret,
        {"model": "openai/gpt-4o-mini", "messages": HELLO},
        headers={
            "user-agent": "OpenAI/Python 1.99.0",
            "x-stainless-lang": "python",
            "x-stainless-package-version": "1.99.0",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            # an allowed header's value is masked all the same when it looks like a key
            "x-request-id": PASTED_KEY,
            "cookie": "session=abc123",
            "x-custom-proxy-token": "tok_9f8e7d6c5b4a",
        },
    )
    assert reply.status_code == 200
    flushed()
    headers = RequestBody.objects.get().headers
    assert headers["user-agent"] == "OpenAI/Python 1.99.0"
    assert headers["x-stainless-lang"] == "python"
    assert headers["x-stainless-package-version"] == "1.99.0"
    assert headers["traceparent"].startswith("00-0af7651916cd43dd")
    assert headers["content-type"] == "application/json"
    assert headers["x-request-id"] == "[SECRET]"
    assert headers["cookie"] == headers["x-custom-proxy-token"] == "(not shown)"
    assert headers["authorization"] == "(not shown)"
    assert "abc123" not in json.dumps(headers) and "tok_9f8e" not in json.dumps(headers)


def test_it_keeps_no_headers_of_a_request_that_captures_nothing(world, gateway_server):
    reply = post(gateway_server, world.secret, {"model": "openai/gpt-4o-mini", "messages": HELLO})
    assert reply.status_code == 200
    flushed()
    assert not RequestBody.objects.exists()


def test_it_captures_for_a_tenant_unless_the_key_says_no(world, gateway_server, make_key):
    capture_for_tenant(world, True)
    _quiet, quiet_secret = make_key(world.tenant, name="quiet", capture_bodies=False)
    kept = post(gateway_server, world.secret, {"model": "openai/gpt-4o-mini", "messages": HELLO})
    skipped = post(gateway_server, quiet_secret, {"model": "openai/gpt-4o-mini", "messages": HELLO})
    assert kept.status_code == skipped.status_code == 200
    flushed()
    assert list(RequestBody.objects.values_list("request_id", flat=True)) == [
        kept.headers["x-request-id"]
    ]


def test_it_captures_a_refused_requests_body_too(world, gateway_server):
    capture_for_key(world, True)
    refused = post(gateway_server, world.secret, {"model": "no-such-alias", "messages": LEAKY})
    assert refused.status_code == 404
    flushed()
    body = RequestBody.objects.get(request_id=refused.headers["x-request-id"])
    assert "[SECRET]" in body.request and PASTED_KEY not in body.request
    assert body.response == ""


def test_it_cuts_a_long_stream_to_the_cap(world, gateway_server, settings):
    settings.REQUEST_LOG_BODY_MAX_BYTES = 512
    capture_for_key(world, True)
    reply = post(
        gateway_server,
        world.secret,
        {"model": "openai/gpt-4o-mini-words-600", "messages": HELLO, "stream": True},
    )
    assert reply.status_code == 200
    streamed = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in reply.text.splitlines()
        if line.startswith("data: {") and json.loads(line[6:])["choices"]
    )
    assert len(streamed.split()) == 600  # the client got all of it
    flushed()
    body = RequestBody.objects.get(request_id=reply.headers["x-request-id"])
    assert body.response_truncated is True
    assert len(body.response.encode()) <= 512
    kept = body.response.removesuffix("…[truncated]")
    assert streamed.startswith(kept) and len(kept) > 400


def test_it_keeps_bodies_for_the_configured_days(world, gateway_server, settings):
    settings.REQUEST_LOG_BODY_RETENTION_DAYS = 2
    capture_for_key(world, True)
    post(gateway_server, world.secret, {"model": "openai/gpt-4o-mini", "messages": HELLO})
    flushed()
    body = RequestBody.objects.get()
    assert (body.expires_at - body.created_at).days == 2


def test_it_logs_a_bad_input_refusal_and_serves_it_through_the_api(world, gateway_server):
    from django.test import Client

    from tenants_app.models import Membership, Role
    from tests.cast import make_user

    refused = post(gateway_server, world.secret, {"model": "openai/gpt-4o-mini", "messages": "x"})
    assert refused.status_code == 400
    flushed()
    owner = make_user("log-owner")
    Membership.objects.create(user=owner, tenant=world.tenant, role=Role.OWNER)
    client = Client()
    client.force_login(owner)
    request_id = refused.headers["x-request-id"]
    [item] = client.get("/api/tenants/acme/requests?status=refused").json()["items"]
    assert (item["request_id"], item["error_type"], item["attempts"]) == (
        request_id,
        "invalid_request",
        [],
    )
    detail = client.get(f"/api/tenants/acme/requests/{request_id}").json()
    assert detail["key_id"] == world.key.pk and detail["body"] is None


def test_it_keeps_the_headers_of_a_responses_api_request_too(world, gateway_server):
    capture_for_key(world, True)
    reply = httpx.post(
        gateway_server.openai_base_url + "/responses",
        json={"model": "openai/gpt-4o-mini", "input": "Hello there"},
        headers={"authorization": f"Bearer {world.secret}", "user-agent": "OpenAI/Python 1.99.0"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    flushed()
    headers = RequestBody.objects.get().headers
    assert headers["user-agent"] == "OpenAI/Python 1.99.0"
    assert headers["authorization"] == "(not shown)"
