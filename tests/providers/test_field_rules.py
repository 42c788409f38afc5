"""The field table (providers_app/kit/fields.py): every adapter consults it before sending,
sends each allowed field in its provider's form, and the committed support matrix is the
table's rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers_app.kit import fields
from providers_app.kit.adapters.config import ProviderConfig
from providers_app.kit.providers import create_adapter
from providers_app.kit.types import ChatRequest, Message, Reasoning, ResponseFormat

ROOT = Path(__file__).resolve().parents[2]
REGISTRY_TYPES = {t: t.replace("_", "-") for t in fields.PROVIDER_TYPES}
SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}


def adapter(rule_type: str):
    return create_adapter(
        REGISTRY_TYPES[rule_type],
        ProviderConfig(name=f"my-{rule_type}", base_url="http://127.0.0.1:9", api_key="k"),
    )


def request(**fields_set) -> ChatRequest:
    return ChatRequest(model="m", messages=[Message(role="user", content="hi")], **fields_set)


def test_it_has_a_rule_for_every_provider_type_in_every_row():
    for row in fields.FIELDS:
        assert set(row.rules) == set(fields.PROVIDER_TYPES), row.kit
        assert row.openai or row.anthropic, row.kit


def test_it_covers_every_request_field_the_kit_models():
    modelled = set(ChatRequest.__dataclass_fields__) - {"extra_body", "passthrough", "wire_format"}
    assert modelled <= set(fields.BY_KIT)


def test_it_keeps_the_committed_support_matrix_equal_to_the_table():
    committed = (ROOT / "docs" / "SUPPORT_MATRIX.md").read_text(encoding="utf-8")
    assert committed == fields.render_markdown(), "run scripts/support_matrix.py"


@pytest.mark.parametrize("row", fields.FIELDS, ids=lambda r: r.kit)
def test_it_refuses_exactly_where_the_table_says_refused(row):
    value = _sample(row)
    if value is None:
        pytest.skip("carried by messages / tools, checked by their own tests")
    req = request()
    if row.kit.startswith("passthrough."):
        req.passthrough[row.kit.split(".", 1)[1]] = value
        req.wire_format = "anthropic" if row.openai is None else "openai"
    else:
        setattr(req, row.kit, value)
        req.wire_format = "openai" if row.openai else "anthropic"
    for rule_type in fields.PROVIDER_TYPES:
        a = adapter(rule_type)
        if row.rules[rule_type] is fields.Rule.REFUSED:
            with pytest.raises(fields.UnsupportedFieldError) as caught:
                a.check_fields(req)
            assert caught.value.field == row.label(req.wire_format)
            assert f"provider 'my-{rule_type}' (type {rule_type})" in str(caught.value)
        else:
            a.check_fields(req)
            a.chat_body(req, stream=False)


def _sample(row: fields.FieldRule):
    return {
        "user": "u",
        "parallel_tool_calls": False,
        "response_format": ResponseFormat(type="json_schema", name="x", schema=SCHEMA),
        "reasoning": Reasoning(effort="low"),
        "seed": 1,
        "logprobs": True,
        "top_logprobs": 2,
        "frequency_penalty": 0.5,
        "presence_penalty": 0.5,
        "service_tier": "flex",
        "metadata": {"a": "b"},
        "n": 2,
        "top_k": 5,
        "temperature": 0.5,
        "top_p": 0.5,
        "stop": ["x"],
        "max_tokens": 10,
    }.get(row.kit, "v" if row.kit.startswith("passthrough.") else None)


def test_it_sends_openai_fields_natively():
    body = adapter("openai").chat_body(
        request(
            response_format=ResponseFormat(
                type="json_schema", name="x", schema=SCHEMA, strict=True
            ),
            reasoning=Reasoning(budget_tokens=3000),
            seed=4,
            logprobs=True,
            top_logprobs=3,
            passthrough={"logit_bias": {"1": 2}},
        ),
        stream=False,
    )
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": SCHEMA, "strict": True},
    }
    # a budget becomes the smallest effort covering it
    assert body["reasoning_effort"] == "medium"
    assert (body["seed"], body["logprobs"], body["top_logprobs"]) == (4, True, 3)
    assert body["logit_bias"] == {"1": 2}


def test_it_sends_openrouter_its_normalised_reasoning_object():
    a = adapter("openrouter")
    assert a.chat_body(request(reasoning=Reasoning(effort="high")), stream=False)["reasoning"] == {
        "effort": "high"
    }
    assert a.chat_body(request(reasoning=Reasoning(budget_tokens=5000)), stream=False)[
        "reasoning"
    ] == {"max_tokens": 5000}


def test_it_translates_for_anthropic():
    a = adapter("anthropic")
    body = a.chat_body(
        request(
            response_format=ResponseFormat(type="json_schema", name="x", schema=SCHEMA),
            reasoning=Reasoning(effort="low"),
            top_k=7,
        ),
        stream=False,
    )
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] > 2048
    assert body["top_k"] == 7


def test_it_refuses_thinking_that_does_not_fit_anthropics_max_tokens():
    with pytest.raises(fields.UnsupportedFieldError, match="max_tokens above 24576"):
        adapter("anthropic").check_fields(
            request(reasoning=Reasoning(effort="high"), max_tokens=100)
        )


def test_it_translates_for_gemini():
    body = adapter("gemini").chat_body(
        request(
            response_format=ResponseFormat(type="json_schema", name="x", schema=SCHEMA),
            reasoning=Reasoning(budget_tokens=4096),
            seed=9,
            top_k=3,
            frequency_penalty=0.1,
            presence_penalty=0.2,
        ),
        stream=False,
    )
    config = body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"]["type"] == "OBJECT"
    # includeThoughts: the thought summaries come back as the reply's reasoning
    assert config["thinkingConfig"] == {"thinkingBudget": 4096, "includeThoughts": True}
    assert (config["seed"], config["topK"]) == (9, 3)
    assert (config["frequencyPenalty"], config["presencePenalty"]) == (0.1, 0.2)


def test_it_refuses_a_schema_gemini_cannot_resolve_naming_the_path():
    bad = {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}
    with pytest.raises(fields.UnsupportedFieldError) as caught:
        adapter("gemini").chat_body(
            request(response_format=ResponseFormat(type="json_schema", name="x", schema=bad)),
            stream=False,
        )
    assert caught.value.field.startswith("response_format.json_schema.schema")


def test_it_maps_effort_and_budget_both_ways():
    for effort, budget in fields.REASONING_BUDGETS.items():
        assert fields.effort_for_budget(budget) == effort
    assert fields.effort_for_budget(10**6) == "high"


def test_it_refuses_a_response_schema_gemini_cannot_express_naming_the_keyword():
    bad = {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}},
    }
    with pytest.raises(fields.UnsupportedFieldError) as caught:
        adapter("gemini").chat_body(
            request(response_format=ResponseFormat(type="json_schema", name="x", schema=bad)),
            stream=False,
        )
    assert caught.value.field == "response_format.json_schema.schema.properties.tags.uniqueItems"
    assert "(type gemini)" in str(caught.value)


def test_it_leaves_out_a_neutral_value_of_a_field_the_provider_does_not_know():
    body = adapter("cerebras").chat_body(
        request(service_tier="auto", passthrough={"store": False}), stream=False
    )
    assert "service_tier" not in body and "store" not in body
    body = adapter("openai").chat_body(
        request(service_tier="auto", passthrough={"store": False}), stream=False
    )
    assert (body["service_tier"], body["store"]) == ("auto", False)


def test_it_knows_every_top_level_field_the_official_sdks_send():
    """openai-python's and anthropic-sdk-python's request parameters are all known, so an
    SDK call never meets the unknown-field 400."""
    from anthropic.types import message_create_params as anthropic_params
    from openai.types.chat import completion_create_params as openai_params

    assert set(openai_params.CompletionCreateParamsBase.__annotations__) <= fields.OPENAI_KNOWN
    assert set(anthropic_params.MessageCreateParamsBase.__annotations__) <= fields.ANTHROPIC_KNOWN


def test_it_drops_only_droppable_fields_and_names_them():
    req = request(seed=3, frequency_penalty=0.5, passthrough={"logit_bias": {"1": 2}})
    fitted, dropped = fields.fit(req, "anthropic", "a", drop=True)
    assert dropped == ["seed", "frequency_penalty", "logit_bias"]
    assert (fitted.seed, fitted.frequency_penalty, fitted.passthrough) == (None, None, {})
    # the caller's request is left as it was: another candidate may take the fields
    assert (req.seed, req.passthrough) == (3, {"logit_bias": {"1": 2}})
    with pytest.raises(fields.UnsupportedFieldError):
        fields.fit(req, "anthropic", "a", drop=False)
    with pytest.raises(fields.UnsupportedFieldError) as caught:
        fields.fit(request(seed=3, logprobs=True), "anthropic", "a", drop=True)
    assert caught.value.field == "logprobs"


def test_it_leaves_a_request_the_provider_takes_as_it_is():
    req = request(seed=3, temperature=0.2)
    assert fields.fit(req, "openai", "o", drop=True) == (req, [])


def test_it_looks_only_at_the_rows_a_type_can_refuse():
    """The per-request check is a handful of attribute reads, not a walk over the table."""
    openai_rows = {row.kit for row in fields._plan("openai").attrs}
    assert openai_rows == {"top_k"}
    assert {name for name, _ in fields._plan("openai").passthrough} >= {"models", "container"}


def test_it_asks_gemini_for_logprobs_in_its_generation_config():
    body = adapter("gemini").chat_body(request(logprobs=True, top_logprobs=3), stream=False)
    config = body["generationConfig"]
    assert (config["responseLogprobs"], config["logprobs"]) == (True, 3)


def test_it_reads_geminis_logprobs_result_as_openais_logprobs_content():
    from providers_app.kit.adapters.gemini import openai_logprobs

    result = {
        "chosenCandidates": [
            {"token": "Hi", "tokenId": 1, "logProbability": -0.1},
            {"token": "é", "tokenId": 2, "logProbability": -1.5},
        ],
        "topCandidates": [
            {
                "candidates": [
                    {"token": "Hi", "tokenId": 1, "logProbability": -0.1},
                    {"token": "Hey", "tokenId": 3, "logProbability": -2.5},
                ]
            },
            {"candidates": [{"token": "é", "tokenId": 2, "logProbability": -1.5}]},
        ],
    }
    content = openai_logprobs(result)["content"]
    assert [(e["token"], e["logprob"]) for e in content] == [("Hi", -0.1), ("é", -1.5)]
    assert content[1]["bytes"] == [0xC3, 0xA9]
    assert [t["token"] for t in content[0]["top_logprobs"]] == ["Hi", "Hey"]
