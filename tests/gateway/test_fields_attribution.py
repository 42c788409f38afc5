"""``user`` (OpenAI) and ``metadata.user_id`` (Anthropic) are kept for attribution: the
usage row of the request holds the end-user id, and the usage API groups by it."""

from __future__ import annotations

import anthropic
import openai
import pytest

from aipk_site.gateway.usage import usage_flush
from tenants_app.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi"}]


def test_it_stores_the_openai_user_on_the_usage_row(world, gateway_server):
    client = openai.OpenAI(
        api_key=world.secret, base_url=gateway_server.openai_base_url, max_retries=0
    )
    reply = client.chat.completions.create(model=world.model("openai"), messages=HI, user="u-42")
    usage_flush()
    assert UsageRecord.objects.get(request_id=reply.id).end_user == "u-42"


def test_it_stores_the_anthropic_metadata_user_id_on_the_usage_row(world, gateway_server):
    client = anthropic.Anthropic(api_key=world.secret, base_url=gateway_server.url, max_retries=0)
    message = client.messages.create(
        model=world.model("anthropic"),
        max_tokens=50,
        messages=HI,  # type: ignore[arg-type]
        metadata={"user_id": "alice"},
    )
    usage_flush()
    assert UsageRecord.objects.get(request_id=message.id).end_user == "alice"


def test_it_keeps_the_user_for_a_gemini_route_that_has_no_such_field(world, gateway_server):
    """Gemini's API has no end-user id: the request is served (not refused) and the id is
    kept where aipk can keep it, on the usage row."""
    client = openai.OpenAI(
        api_key=world.secret, base_url=gateway_server.openai_base_url, max_retries=0
    )
    reply = client.chat.completions.create(model=world.model("gemini"), messages=HI, user="g-7")
    usage_flush()
    assert UsageRecord.objects.get(request_id=reply.id).end_user == "g-7"


def test_it_leaves_the_end_user_empty_when_the_request_names_none(world, gateway_server):
    client = openai.OpenAI(
        api_key=world.secret, base_url=gateway_server.openai_base_url, max_retries=0
    )
    reply = client.chat.completions.create(model=world.model("openai"), messages=HI)
    usage_flush()
    assert UsageRecord.objects.get(request_id=reply.id).end_user == ""
