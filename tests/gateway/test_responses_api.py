"""POST /v1/responses: the official openai SDK's Responses client, unchanged, through aipk
to the simulator -- served by OpenAI, Anthropic and Gemini routes alike."""

from __future__ import annotations

import base64
import json

import httpx
import openai
import pytest
from openai.types.responses import Response

from aipk_site.gateway.response_store import responses_flush, responses_forget_recent
from aipk_site.gateway.usage import usage_flush
from providers_app.simulator.media import PIXEL_PNG, TINY_PDF
from tenants_app.models import StoredResponse, UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

SERVED_BY = ("openai", "anthropic", "gemini")
WEATHER_TOOLS = [
    {
        "type": "function",
        "name": name,
        "description": description,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    for name, description in (
        ("get_weather", "Weather for a city"),
        ("get_time", "Local time in a city"),
    )
]
CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}


def client_for(world, gateway_server, secret=None) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=secret or world.secret, base_url=gateway_server.openai_base_url, max_retries=0
    )


def records(**filters) -> list[UsageRecord]:
    usage_flush()
    return list(UsageRecord.objects.filter(**filters).order_by("created_at", "id"))


def post(gateway_server, secret, body, method="POST", path="/responses"):
    return httpx.request(
        method,
        gateway_server.openai_base_url + path,
        json=body,
        headers={"authorization": f"Bearer {secret}"},
        timeout=30,
    )


def tool_results(provider_type: str) -> str:
    if provider_type == "gemini":  # Gemini's functionResponse is JSON
        return 'Tool results: {"result":"sunny"} | {"result":"noon"}'
    return "Tool results: sunny | noon"


# -- replies ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider_type", SERVED_BY)
def test_it_answers_a_string_input_with_a_response_object(world, gateway_server, provider_type):
    raw = client_for(world, gateway_server).responses.with_raw_response.create(
        model=world.model(provider_type), input="Say hello", instructions="Be brief"
    )
    response = raw.parse()
    # strictly the SDK's type (parse() alone builds models without validating them)
    Response.model_validate(raw.http_response.json())
    assert response.id.startswith("resp_") and response.object == "response"
    assert raw.headers["x-request-id"] == response.id
    assert raw.headers["x-aipk-provider"] == world.providers[provider_type].name
    assert (response.status, response.model) == ("completed", world.model(provider_type))
    assert response.output_text == "Simulated reply to: Say hello"
    [item] = response.output
    assert item.type == "message" and item.role == "assistant" and item.id.startswith("msg_")
    assert response.instructions == "Be brief"
    usage = response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


@pytest.mark.parametrize("provider_type", SERVED_BY)
def test_it_writes_exactly_one_usage_row_with_the_responses_tokens(
    world, gateway_server, provider_type
):
    response = client_for(world, gateway_server).responses.create(
        model=world.model(provider_type), input="Count my tokens please"
    )
    [record] = records()
    assert (record.request_id, record.endpoint, record.status) == (
        response.id,
        "responses",
        "success",
    )
    assert record.provider_id == world.providers[provider_type].pk
    assert record.prompt_tokens == response.usage.input_tokens
    assert record.completion_tokens == response.usage.output_tokens
    assert record.reasoning_tokens == response.usage.output_tokens_details.reasoning_tokens


def test_it_counts_responses_under_their_own_endpoint_label(world, gateway_server, monkeypatch):
    from prometheus_client.parser import text_string_to_metric_families

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)

    def requests_counted() -> float:
        text = httpx.get(gateway_server.url + "/metrics", timeout=10).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "aipk_gateway_requests_total"
            and sample.labels.get("endpoint") == "responses"
            and sample.labels.get("provider") == "anthropic"
            and sample.labels.get("status") == "success"
        )

    before = requests_counted()
    client_for(world, gateway_server).responses.create(model=world.model("anthropic"), input="hi")
    assert requests_counted() == before + 1


def test_it_takes_a_list_of_messages_with_content_parts(world, gateway_server):
    response = client_for(world, gateway_server).responses.create(
        model=world.model("openai"),
        input=[
            {"role": "developer", "content": "You are terse."},
            {"role": "user", "content": [{"type": "input_text", "text": "first"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        ],
    )
    assert response.output_text == "Simulated reply to: Hi"


@pytest.mark.parametrize("provider_type", SERVED_BY)
def test_it_passes_input_image_and_input_file_parts(world, gateway_server, provider_type):
    png = "data:image/png;base64," + base64.b64encode(PIXEL_PNG).decode()
    pdf = "data:application/pdf;base64," + base64.b64encode(TINY_PDF).decode()
    response = client_for(world, gateway_server).responses.create(
        model=world.model(provider_type),
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": png, "detail": "low"},
                    {"type": "input_file", "file_data": pdf, "filename": "a.pdf"},
                ],
            }
        ],
    )
    assert response.output_text.startswith("Simulated reply to: What is this? [image: image/png]")
    assert "application/pdf" in response.output_text


def test_it_reports_a_reply_cut_by_max_output_tokens_as_incomplete(world, gateway_server):
    response = client_for(world, gateway_server).responses.create(
        model=world.model("openai"), input="a long answer please now", max_output_tokens=2
    )
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.max_output_tokens == 2


@pytest.mark.parametrize("provider_type", SERVED_BY)
def test_it_answers_json_fitting_the_text_format_schema(world, gateway_server, provider_type):
    response = client_for(world, gateway_server).responses.create(
        model=world.model(provider_type),
        input="Name a city",
        text={
            "format": {"type": "json_schema", "name": "city", "schema": CITY_SCHEMA, "strict": True}
        },
    )
    assert json.loads(response.output_text) == {"city": "city-value", "population": 1}
    assert response.text.format.type == "json_schema"


@pytest.mark.parametrize("provider_type", ("openai", "anthropic", "gemini"))
def test_it_asks_for_reasoning_effort_and_reports_reasoning_tokens(
    world, gateway_server, provider_type
):
    response = client_for(world, gateway_server).responses.create(
        model=world.model(provider_type),
        input="Think about it",
        reasoning={"effort": "low"},
        max_output_tokens=4000,
    )
    assert response.reasoning.effort == "low"
    assert response.usage.output_tokens_details.reasoning_tokens > 0
    [record] = records()
    assert record.reasoning_tokens == response.usage.output_tokens_details.reasoning_tokens


# -- streams ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider_type", SERVED_BY)
def test_it_streams_the_typed_events_and_the_sdk_builds_the_final_response(
    world, gateway_server, provider_type
):
    client = client_for(world, gateway_server)
    with client.responses.stream(
        model=world.model(provider_type), input="Tell me a story about streams"
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1
    assert (
        "".join(deltas) == final.output_text == "Simulated reply to: Tell me a story about streams"
    )
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.status == "completed" and final.usage.output_tokens > 0
    [record] = records()
    assert record.request_id == final.id and record.streamed
    assert record.completion_tokens == final.usage.output_tokens


def test_it_streams_function_calls_with_create_stream_true(world, gateway_server):
    client = client_for(world, gateway_server)
    events = list(
        client.responses.create(
            model=world.model("anthropic"),
            input="Call get_weather and get_time for Paris",
            tools=WEATHER_TOOLS,
            stream=True,
        )
    )
    kinds = [e.type for e in events]
    assert kinds.count("response.output_item.added") == 2
    assert "response.function_call_arguments.delta" in kinds
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [e.name for e in done] == ["get_weather", "get_time"]
    final = events[-1].response
    assert events[-1].type == "response.completed"
    assert [item.name for item in final.output] == ["get_weather", "get_time"]
    assert all(isinstance(json.loads(item.arguments), dict) for item in final.output)


def test_it_ends_a_stream_with_response_failed_on_a_mid_stream_error(world, gateway_server):
    client = client_for(world, gateway_server)
    events = list(
        client.responses.create(
            model="openai/gpt-fail-midstream_error", input="a long answer please", stream=True
        )
    )
    assert "response.output_text.delta" in [e.type for e in events]
    assert events[-1].type == "response.failed"
    assert events[-1].response.status == "failed" and events[-1].response.error.message
    [record] = records()
    assert record.request_id == events[-1].response.id and record.status == "error"
    assert record.completion_tokens > 0  # the text that did arrive is accounted


# -- tools and conversations -----------------------------------------------------------


def _outputs(calls) -> list[dict]:
    results = {"get_weather": "sunny", "get_time": "noon"}
    return [
        {"type": "function_call_output", "call_id": c.call_id, "output": results[c.name]}
        for c in calls
    ]


@pytest.mark.parametrize("provider_type", SERVED_BY)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_it_runs_a_tool_round_trip_with_previous_response_id(
    world, gateway_server, provider_type, stream
):
    client = client_for(world, gateway_server)
    asked = dict(
        model=world.model(provider_type),
        input="Call get_weather and get_time for Paris",
        tools=WEATHER_TOOLS,
    )
    if stream:
        with client.responses.stream(**asked) as events:
            first = events.get_final_response()
    else:
        first = client.responses.create(**asked)
    calls = [item for item in first.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert all(c.call_id and c.id.startswith("fc_") for c in calls)
    Response.model_validate(client.responses.retrieve(first.id).model_dump())
    second = client.responses.create(
        model=world.model(provider_type),
        previous_response_id=first.id,
        input=_outputs(calls),
        tools=WEATHER_TOOLS,
    )
    assert second.output_text == tool_results(provider_type)
    assert second.previous_response_id == first.id


@pytest.mark.parametrize("provider_type", SERVED_BY)
def test_it_runs_a_tool_round_trip_with_the_full_input_list(world, gateway_server, provider_type):
    client = client_for(world, gateway_server)
    question = [{"role": "user", "content": "Call get_weather and get_time for Paris"}]
    first = client.responses.create(
        model=world.model(provider_type), input=question, tools=WEATHER_TOOLS, store=False
    )
    calls = [item for item in first.output if item.type == "function_call"]
    items = [*question, *[c.model_dump(exclude_none=True) for c in calls], *_outputs(calls)]
    second = client.responses.create(
        model=world.model(provider_type), input=items, tools=WEATHER_TOOLS, store=False
    )
    assert second.output_text == tool_results(provider_type)


def test_it_continues_a_conversation_read_back_from_the_database(world, gateway_server):
    client = client_for(world, gateway_server)
    first = client.responses.create(model=world.model("openai"), input="My name is Ada")
    responses_flush()
    responses_forget_recent()  # the next reads go to the database
    [row] = StoredResponse.objects.all()
    assert (row.response_id, row.tenant_id, row.virtual_key_id) == (
        first.id,
        world.tenant.pk,
        world.key.pk,
    )
    assert [item["type"] for item in row.items] == ["message", "message"]
    second = client.responses.create(
        model=world.model("openai"), previous_response_id=first.id, input="And yours?"
    )
    assert second.output_text == "Simulated reply to: And yours?"
    again = client.responses.retrieve(first.id)
    assert again.id == first.id and again.output_text == first.output_text


def test_it_retrieves_and_deletes_a_stored_response(world, gateway_server):
    client = client_for(world, gateway_server)
    created = client.responses.create(
        model=world.model("openai"), input="Keep this", metadata={"topic": "tests"}
    )
    fetched = client.responses.retrieve(created.id)
    assert fetched.output_text == created.output_text and fetched.metadata == {"topic": "tests"}
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(
            model=world.model("openai"), previous_response_id=created.id, input="more"
        )
    responses_flush()
    assert not StoredResponse.objects.exists()


def test_it_does_not_store_a_response_sent_with_store_false(world, gateway_server):
    client = client_for(world, gateway_server)
    created = client.responses.create(model=world.model("openai"), input="Forget me", store=False)
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(
            model=world.model("openai"), previous_response_id=created.id, input="more"
        )
    assert caught.value.body["param"] == "previous_response_id"
    responses_flush()
    assert not StoredResponse.objects.exists()


def test_it_keeps_each_tenants_responses_to_itself(world, gateway_server, make_key):
    from tenants_app.models import Tenant

    other = Tenant.objects.create(name="Other", slug="other")
    _, other_secret = make_key(other)
    mine = client_for(world, gateway_server).responses.create(
        model=world.model("openai"), input="Private"
    )
    theirs = client_for(world, gateway_server, other_secret)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.create(
            model=world.model("openai"), previous_response_id=mine.id, input="x"
        )
    with pytest.raises(openai.NotFoundError):
        theirs.responses.delete(mine.id)
    responses_flush()
    responses_forget_recent()  # and from the database, too
    with pytest.raises(openai.NotFoundError):
        theirs.responses.retrieve(mine.id)
    assert client_for(world, gateway_server).responses.retrieve(mine.id).id == mine.id


# -- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "hi", "frequency_penalty": 1}, "frequency_penalty"),
        ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": "hi", "tool_choice": {"type": "file_search"}}, "tool_choice.type"),
        ({"input": 42}, "input"),
        ({}, "input"),
        ({"input": [{"type": "item_reference", "id": "rs_1"}]}, "input[0].type"),
        (
            {"input": [{"type": "reasoning", "summary": [], "encrypted_content": "gAAAA"}]},
            "input[0].encrypted_content",
        ),
        ({"input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"input": "hi", "text": {"format": {"type": "xml"}}}, "text.format.type"),
        (
            {"input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}},
            "text.format.schema",
        ),
        ({"input": "hi", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"input": "hi", "reasoning": {"summary": "verbose"}}, "reasoning.summary"),
        ({"input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "hi", "include": ["file_search_call.results"]}, "include"),
        ({"input": "hi", "background": True}, "background"),
        ({"input": "hi", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"input": "hi", "metadata": {"k": 1}}, "metadata.k"),
    ],
)
def test_it_refuses_a_bad_body_naming_the_field(world, gateway_server, body, param):
    answer = post(gateway_server, world.secret, {"model": world.model("openai"), **body})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param
    assert param in answer.json()["error"]["message"]
    [record] = records()
    assert (record.endpoint, record.status) == ("responses", "refused")
    assert record.request_id == answer.headers["x-request-id"]


@pytest.mark.parametrize(
    ("provider_type", "body", "field"),
    [
        ("gemini", {"service_tier": "flex"}, "service_tier"),
        ("qwen", {"reasoning": {"effort": "low"}}, "reasoning.effort"),
    ],
)
def test_it_refuses_a_field_the_provider_cannot_take_by_its_responses_name(
    world, gateway_server, provider_type, body, field
):
    with pytest.raises(openai.BadRequestError) as caught:
        client_for(world, gateway_server).responses.create(
            model=world.model(provider_type), input="hi", **body
        )
    assert caught.value.body["code"] == "unsupported_parameter"
    assert caught.value.body["message"].startswith(f"{field} is not supported by provider")


def test_it_answers_unknown_subpaths_and_wrong_methods_in_json(world, gateway_server):
    deeper = post(gateway_server, world.secret, None, "GET", "/responses/resp_1/input_items")
    assert deeper.status_code == 404 and "error" in deeper.json()
    wrong = post(gateway_server, world.secret, None, "PUT", "/responses")
    assert wrong.status_code == 405 and "error" in wrong.json()
    unknown = post(gateway_server, world.secret, None, "GET", "/responses/resp_nope")
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "response_id"
