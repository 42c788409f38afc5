"""The playground in a real browser: a tenant member chats over /ws/chat/ with a model
on the provider simulator (docs/SIMULATOR.md: a model id containing ``delay-<n>ms``
streams one word every n ms, so a reply arrives in visible pieces)."""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import expect

from aipk_site.gateway.request_bodies import request_bodies_flush
from aipk_site.gateway.usage import usage_flush
from providers_app.services.credentials import api_key_add
from providers_app.services.providers import provider_create
from tenants_app.models import Membership, Pricing, RequestBody, Role, Tenant, UsageRecord
from tenants_app.services.pricing import pricing_cache_clear
from tenants_app.services.routes import route_create

FAST_MODEL = "gpt-4o-mini-delay-60ms"
SLOW_MODEL = "gpt-4o-mini-delay-400ms"
PROMPT = "Please describe how a streamed reply arrives in the playground one word at a time"
# checked in one go in the page, so "still streaming" and what it shows are one moment:
# the streamed text so far, once several chat.delta have arrived, with Send disabled and
# Stop enabled while the reply runs
STREAMING_WITH_SEVERAL_DELTAS = """() => {
  const replies = document.querySelectorAll('.msg-assistant');
  const reply = replies[replies.length - 1];
  const streaming = reply && reply.dataset.state === 'streaming'
    && Number(reply.dataset.deltas) >= 3
    && document.getElementById('pg-send').disabled
    && !document.getElementById('pg-stop').disabled;
  return streaming ? reply.querySelector('.msg-body').textContent : false;
}"""
# the reply's status line at that same moment
STATUS_WHILE_STREAMING = """() => {
  const replies = document.querySelectorAll('.msg-assistant');
  const reply = replies[replies.length - 1];
  const streaming = reply && reply.dataset.state === 'streaming'
    && Number(reply.dataset.deltas) >= 3;
  return streaming ? reply.querySelector('.msg-meta').textContent : false;
}"""


@pytest.fixture
def member(console_user, simulator):
    """Mia, a member of Acme, whose routes reach the simulator's OpenAI."""
    provider = provider_create(
        name="openai",
        type="openai",
        base_url=simulator.url + "/openai/v1",
        default_model="gpt-4o-mini",
    )
    api_key_add(provider=provider, label="simulator", secret="sk-sim-playground-0001")
    tenant = Tenant.objects.create(name="Acme", slug="acme")
    for alias, model in (("chat-fast", FAST_MODEL), ("chat-slow", SLOW_MODEL)):
        route_create(
            tenant=tenant,
            alias=alias,
            candidates=[{"provider": "openai", "model": model}],
            actor=None,
        )
    Pricing.objects.create(
        provider_type="openai", model=FAST_MODEL, input_per_million=1, output_per_million=2
    )
    pricing_cache_clear()
    mia = console_user("mia")
    Membership.objects.create(user=mia, tenant=tenant, role=Role.MEMBER)
    return mia


def open_playground(console, user, model: str):
    console.sign_in(user)
    console.goto("/console/playground/")
    page = console.page
    expect(page.get_by_role("status").filter(has_text="Connected as Acme")).to_be_visible()
    page.get_by_label("Model", exact=True).select_option(model)
    return page


def send(page, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()


def last_reply(page):
    return page.locator(".msg-assistant").last


def cancelled_records() -> list[UsageRecord]:
    """The cancel is accounted on the server as the stream closes; the writer is batched."""
    deadline = time.monotonic() + 10
    while True:
        usage_flush()
        found = list(UsageRecord.objects.filter(status="cancelled"))
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_it_streams_a_reply_and_shows_its_usage_and_latency(console, member):
    page = open_playground(console, member, "chat-fast")
    console.shot("playground")

    send(page, PROMPT)

    # several chat.delta have been appended while the reply is still streaming, and the
    # status says so (not "waiting for the first token" any more), with the time to it
    status = page.wait_for_function(STATUS_WHILE_STREAMING).json_value()
    assert "waiting" not in status
    assert re.fullmatch(r"streaming… · first token \d+(\.\d+)? m?s", status), status
    partial = page.wait_for_function(STREAMING_WITH_SEVERAL_DELTAS).json_value()
    console.shot("streaming")
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    final = last_reply(page).locator(".msg-body").text_content()
    assert final == f"Simulated reply to: {PROMPT}"
    assert partial and final.startswith(partial) and len(partial) < len(final)
    assert int(last_reply(page).get_attribute("data-deltas")) == len(final.split())
    expect(page.locator(".msg-user")).to_have_text(PROMPT)
    usage_flush()
    [first] = UsageRecord.objects.filter(tenant__slug="acme")
    assert first.completion_tokens == len(final.split()) and first.cost_usd > 0
    expect(last_reply(page).locator(".pg-usage")).to_have_text(
        f"{first.prompt_tokens} prompt + {first.completion_tokens} completion tokens"
        f" · ${first.cost_usd}"
    )
    expect(last_reply(page).locator(".pg-latency")).to_contain_text("first token")
    expect(last_reply(page).locator(".pg-latency")).to_have_text(
        re.compile(r"^first token \d+(\.\d+)? m?s · done in \d+(\.\d+)? m?s$")
    )
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    console.shot("reply-with-usage")

    # the next turn carries the conversation so far
    send(page, "And a second question")
    expect(page.locator(".msg-assistant")).to_have_count(2)
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    expect(last_reply(page).locator(".msg-body")).to_have_text(
        "Simulated reply to: And a second question"
    )
    usage_flush()
    records = UsageRecord.objects.filter(tenant__slug="acme").order_by("created_at", "id")
    assert [(r.status, r.virtual_key_id) for r in records] == [("success", None)] * 2
    assert records[1].prompt_tokens > records[0].prompt_tokens  # history was sent
    console.shot("second-turn")


def test_it_stops_a_reply_mid_stream(console, member):
    page = open_playground(console, member, "chat-slow")

    send(page, PROMPT)
    page.wait_for_function(STREAMING_WITH_SEVERAL_DELTAS)
    console.shot("slow-reply-streaming")
    page.get_by_role("button", name="Stop").click()

    expect(last_reply(page)).to_have_attribute("data-state", "stopped")
    expect(last_reply(page).locator(".pg-stopped")).to_have_text("Stopped")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page.get_by_role("button", name="Stop")).to_be_disabled()
    shown = last_reply(page).locator(".msg-body").text_content()
    assert shown and len(shown) < len(f"Simulated reply to: {PROMPT}")
    console.shot("reply-stopped")
    [record] = cancelled_records()
    assert (record.tenant.slug, record.virtual_key_id, record.endpoint) == ("acme", None, "ws")
    assert record.completion_tokens >= 3


def test_it_shows_the_demo_tools_call_and_answers_it(console, member):
    page = open_playground(console, member, "chat-fast")
    page.get_by_label("Demo tool").check()

    send(page, "What does get_weather say about Paris?")

    call = page.locator(".tool-call")
    expect(call).to_have_count(1)
    expect(call.locator("strong")).to_have_text("get_weather")
    expect(call.locator(".tool-arguments")).to_have_text(' {"city":"city-value"}')
    expect(call.locator(".tool-result")).to_contain_text('"forecast":"sunny"')
    # the playground answered the call and the model replied to the result
    expect(page.locator(".msg-assistant")).to_have_count(2)
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    expect(last_reply(page).locator(".msg-body")).to_contain_text("Tool results:")
    expect(last_reply(page).locator(".msg-body")).to_contain_text('"city":"city-value"')
    console.shot("tool-call")


def test_it_refuses_an_out_of_range_setting_next_to_its_field_before_sending(console, member):
    page = open_playground(console, member, "chat-fast")
    temperature = page.get_by_label("Temperature")
    temperature.fill("7")

    send(page, "Too hot")

    expect(page.locator("#pg-temperature-error")).to_have_text("Temperature must be at most 2")
    expect(temperature).to_have_attribute("aria-invalid", "true")
    expect(temperature).to_be_focused()
    expect(page.locator(".msg")).to_have_count(0)  # nothing was sent
    expect(page.get_by_label("Message")).to_have_value("Too hot")
    console.shot("setting-refused-in-the-browser")

    page.get_by_label("Max tokens").fill("0")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#pg-max-tokens-error")).to_have_text("Max tokens must be at least 1")

    temperature.fill("0.25")
    page.get_by_label("Max tokens").fill("12")
    expect(temperature).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#pg-temperature-error")).to_have_text("")
    page.get_by_role("button", name="Send").click()
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    expect(page.locator("#pg-max-tokens-error")).to_have_text("")


def test_it_shows_the_servers_refusal_of_a_setting_next_to_its_field(console, member):
    Tenant.objects.filter(slug="acme").update(capture_bodies=True)  # to read what was sent
    page = open_playground(console, member, "chat-fast")
    # what gets past the browser's own check (here: its bounds taken away) is refused by
    # the chat service, whose error names the setting (param "options.max_tokens")
    page.evaluate(
        "() => { const f = document.getElementById('pg-max-tokens');"
        " f.removeAttribute('min'); f.removeAttribute('max'); }"
    )
    max_tokens = page.get_by_label("Max tokens")
    max_tokens.fill("-1")

    send(page, "Say a lot")

    friendly = "Max tokens must be between 1 and 1000000"
    expect(page.locator("#pg-max-tokens-error")).to_have_text(friendly)
    expect(max_tokens).to_have_attribute("aria-invalid", "true")
    error = page.locator(".msg-error")
    expect(error).to_have_text(friendly + " (invalid_request)")
    expect(error).to_have_attribute("data-code", "invalid_request")
    expect(page.locator(".msg-assistant")).to_have_count(0)
    assert "options.max_tokens" not in page.locator("#playground").inner_text()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    console.shot("setting-refused-by-the-server")

    # the refused question left the conversation and is back in the box, to send again
    expect(page.locator(".msg-user")).to_have_count(0)
    expect(page.get_by_label("Message")).to_have_value("Say a lot")

    max_tokens.fill("5")
    expect(page.locator("#pg-max-tokens-error")).to_have_text("")
    expect(max_tokens).not_to_have_attribute("aria-invalid", "true")
    page.get_by_role("button", name="Send").click()

    expect(last_reply(page)).to_have_attribute("data-state", "done")
    expect(page.locator(".msg-user")).to_have_count(1)
    # the question went out once, not twice
    usage_flush()
    request_bodies_flush()
    answered = UsageRecord.objects.get(status="success").request_id
    sent = json.loads(RequestBody.objects.get(request_id=answered).request)["messages"]
    assert [m["content"] for m in sent if m["role"] == "user"] == ["Say a lot"]


def test_it_shows_model_output_as_text_never_as_html(console, member):
    page = open_playground(console, member, "chat-fast")
    hostile = '<b>bold</b> <img src="x" onerror="window.pwned = 1">'

    send(page, hostile)

    expect(last_reply(page)).to_have_attribute("data-state", "done")
    expect(last_reply(page).locator(".msg-body")).to_have_text(f"Simulated reply to: {hostile}")
    assert page.locator("#pg-log b, #pg-log img").count() == 0
    assert page.evaluate("() => window.pwned") is None
    console.shot("output-as-text")


def test_it_switches_tenant_with_its_own_socket_and_models(console, member):
    globex = Tenant.objects.create(name="Globex", slug="globex")
    route_create(
        tenant=globex,
        alias="globex-chat",
        candidates=[{"provider": "openai", "model": FAST_MODEL}],
        actor=None,
    )
    Membership.objects.create(user=member, tenant=globex, role=Role.ADMIN)
    page = open_playground(console, member, "chat-fast")
    send(page, "Hello Acme")
    expect(last_reply(page)).to_have_attribute("data-state", "done")

    page.get_by_label("Tenant", exact=True).select_option("globex")

    expect(page.get_by_role("status").filter(has_text="Connected as Globex")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/console/playground/\?tenant=globex$"))
    expect(page.get_by_label("Model", exact=True).locator("option")).to_have_text(
        ["globex-chat", "openai/gpt-4o-mini"]
    )
    expect(page.locator(".msg")).to_have_count(0)  # a new tenant starts a new conversation
    send(page, "Hello Globex")
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    console.shot("switched-tenant")
    usage_flush()
    assert sorted(UsageRecord.objects.values_list("tenant__slug", flat=True)) == ["acme", "globex"]
