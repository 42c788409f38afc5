"""Captured bodies as the request log keeps them (aipk_site/gateway/request_bodies.py):
PII and key-shaped strings masked, media left out, each side cut to the cap without
splitting a character, and deleted by the retention run once they expire."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from aipk_site.gateway.redaction import mask_secrets
from aipk_site.gateway.request_bodies import body_capture, body_row, request_bodies_flush
from providers_app.kit.types import ChatRequest, ImagePart, Message, TextPart, Tool, ToolCall
from tenants_app.models import RequestBody, Tenant, UsageRecord
from tenants_app.services.retention import request_bodies_prune, retention_prune

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)


def captured(
    request: ChatRequest, answer: str = "", request_id: str = "req-1", tenant_id=1, headers=None
):
    return (request_id, tenant_id, request, answer, NOW, headers)


def chat(*messages: Message, **fields) -> ChatRequest:
    return ChatRequest(model="smart", messages=list(messages), **fields)


def test_it_keeps_the_parsed_request_with_its_options():
    row = body_row(
        captured(
            chat(
                Message(role="system", content="Be brief."),
                Message(role="user", content="Hi"),
                max_tokens=50,
                temperature=0.2,
                tools=[Tool(name="weather", description="Today's weather")],
            ),
            "Hello!",
        )
    )
    doc = json.loads(row["request"])
    assert doc["model"] == "smart" and doc["max_tokens"] == 50 and doc["temperature"] == 0.2
    assert doc["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert doc["tools"][0]["name"] == "weather"
    assert "top_p" not in doc  # options the caller did not send are left out
    assert row["response"] == "Hello!"
    assert row["expires_at"] - row["created_at"] == dt.timedelta(days=7)


def test_it_masks_pii_and_keys_in_messages_tool_calls_and_the_answer():
    call = ToolCall(
        id="c1",
        name="mail",
        arguments=json.dumps({"to": "ada@example.com", "key": "sk-ant-api03-" + "x" * 30}),
    )
    row = body_row(
        captured(
            chat(
                Message(
                    role="user",
                    content="card 4111 1111 1111 1111, key AIzaSyA1234567890abcdefghijklmnopqrstu",
                ),
                Message(role="assistant", tool_calls=[call]),
            ),
            "Sent to ada@example.com with token ghp_abcdefghijklmnopqrstuvwxyz0123",
        )
    )
    doc = json.loads(row["request"])
    assert doc["messages"][0]["content"] == "card [CARD], key [SECRET]"
    arguments = json.loads(doc["messages"][1]["tool_calls"][0]["arguments"])
    assert arguments == {"to": "[EMAIL]", "key": "[SECRET]"}
    assert row["response"] == "Sent to [EMAIL] with token [SECRET]"


def test_it_names_media_without_keeping_its_bytes():
    image = ImagePart(data="iVBORw0KGgo" * 100, media_type="image/png")
    message = Message(
        role="user", content="what is this?", parts=[TextPart("what is this?"), image]
    )
    doc = json.loads(body_row(captured(chat(message)))["request"])
    assert doc["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image"},
    ]
    assert "iVBORw0KGgo" not in json.dumps(doc)


def test_it_cuts_each_side_to_the_cap_in_bytes_never_inside_a_character(settings):
    settings.REQUEST_LOG_BODY_MAX_BYTES = 300
    row = body_row(captured(chat(Message(role="user", content="é" * 1000)), "ü" * 1000))
    for side in ("request", "response"):
        assert row[f"{side}_truncated"] is True
        assert len(row[side].encode()) <= 300
        assert row[side].endswith("…[truncated]")
    assert row["response"].removesuffix("…[truncated]") == "ü" * len(
        row["response"].removesuffix("…[truncated]")
    )


def test_it_leaves_a_body_under_the_cap_whole(settings):
    settings.REQUEST_LOG_BODY_MAX_BYTES = 300
    row = body_row(captured(chat(Message(role="user", content="short")), "also short"))
    assert not row["request_truncated"] and not row["response_truncated"]
    assert row["response"] == "also short"


def test_it_masks_a_key_before_cutting_so_no_prefix_of_it_survives(settings):
    settings.REQUEST_LOG_BODY_MAX_BYTES = 256
    secret = "sk-proj-" + "A1b2C3d4" * 8
    row = body_row(captured(chat(Message(role="user", content="x")), "y" * 230 + " " + secret))
    assert "sk-proj-A1b2" not in row["response"]


@pytest.mark.parametrize(
    "text",
    [
        "scikit-learn and task-runner-configuration-files",  # words with dashes
        "sk-short",  # too short to be a key
        "the 2026-03-10 release, build 1234567890123456",
        "AKIA is a word here",
    ],
)
def test_it_leaves_ordinary_text_alone(text):
    assert mask_secrets(text) == (text, 0)


@pytest.mark.parametrize(
    "secret",
    [
        "sk-" + "a" * 40,
        "sk-ant-api03-" + "b" * 40,
        "sk-or-v1-" + "c" * 40,
        "aipk-" + "d" * 30,
        "aipkadm-" + "e" * 30,
        "sk_live_" + "f" * 24,
        "AKIAIOSFODNN7EXAMPLE",
        "xoxb-1234567890-abcdefghij",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
    ],
)
def test_it_masks_each_key_shape(secret):
    assert mask_secrets(f"use {secret} now") == ("use [SECRET] now", 1)


def test_it_masks_a_bearer_token_written_out():
    assert mask_secrets("Authorization: Bearer abcdefghijklmnop1234") == (
        "Authorization: [SECRET]",
        1,
    )


# -- written off the loop, kept per tenant, pruned ------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_it_writes_queued_bodies_off_the_caller(tenant):
    body_capture(
        request_id="req-q",
        tenant_id=tenant.pk,
        request=chat(Message("user", "mail ada@example.com")),
        response_text="ok",
    )
    request_bodies_flush()  # the writer thread may have taken it already: either way, stored
    body = RequestBody.objects.get(request_id="req-q")
    assert (body.tenant_id, body.response) == (tenant.pk, "ok")
    assert "[EMAIL]" in body.request


def body(tenant: Tenant, request_id: str, *, expires_in: dt.timedelta) -> RequestBody:
    now = timezone.now()
    return RequestBody.objects.create(
        request_id=request_id,
        tenant=tenant,
        request="{}",
        response="",
        created_at=now - dt.timedelta(days=7),
        expires_at=now + expires_in,
    )


def test_it_prunes_expired_bodies_and_keeps_their_usage_rows(tenant, other_tenant):
    UsageRecord.objects.create(
        request_id="old", tenant=tenant, status="success", created_at=timezone.now()
    )
    body(tenant, "old", expires_in=-dt.timedelta(minutes=1))
    body(other_tenant, "old-globex", expires_in=-dt.timedelta(days=1))
    body(tenant, "fresh", expires_in=dt.timedelta(days=1))

    assert request_bodies_prune(batch_size=1) == 2

    assert list(RequestBody.objects.values_list("request_id", flat=True)) == ["fresh"]
    assert UsageRecord.objects.filter(request_id="old").exists()


def test_the_daily_retention_run_prunes_bodies(tenant):
    body(tenant, "old", expires_in=-dt.timedelta(seconds=1))
    assert retention_prune()["request_bodies"] == 1
    assert not RequestBody.objects.exists()


def test_a_retention_of_zero_keeps_bodies(settings):
    settings.REQUEST_LOG_BODY_RETENTION_DAYS = 0
    row = body_row(captured(chat(Message(role="user", content="hi"))))
    assert row["expires_at"] - row["created_at"] > dt.timedelta(days=365 * 50)


def test_deleting_a_tenant_deletes_its_bodies(tenant, other_tenant):
    body(tenant, "a", expires_in=dt.timedelta(days=1))
    body(other_tenant, "b", expires_in=dt.timedelta(days=1))
    tenant.delete()
    assert list(RequestBody.objects.values_list("request_id", flat=True)) == ["b"]


def test_it_keeps_allowed_header_values_and_only_the_names_of_the_others():
    row = body_row(
        captured(
            chat(Message(role="user", content="hi")),
            headers={
                "User-Agent": "Anthropic/Python 0.70.0",
                "anthropic-version": "2023-06-01",
                "x-stainless-os": "Linux",
                "x-api-key": "sk-ant-api03-" + "a" * 40,
                "proxy-authorization": "Basic dXNlcjpwYXNz",
                "x-request-id": "sk-proj-Zq81LmXc2vBn4Tr7Yp0Ws5Ke3Hd9Gf6A",
            },
        )
    )
    assert row["headers"] == {
        "anthropic-version": "2023-06-01",
        "proxy-authorization": "(not shown)",
        "user-agent": "Anthropic/Python 0.70.0",
        "x-api-key": "(not shown)",
        "x-request-id": "[SECRET]",
        "x-stainless-os": "Linux",
    }


def test_it_keeps_no_headers_when_none_were_given():
    assert body_row(captured(chat(Message(role="user", content="hi"))))["headers"] == {}
