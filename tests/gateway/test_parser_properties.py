"""Property: whatever JSON a client sends, the OpenAI and Anthropic request parsers
either accept it or refuse it with a typed 4xx (the AipkError family) -- never
another exception, which the API would turn into a 500.

Two kinds of input: arbitrary JSON values, and objects shaped loosely like requests
(the known field names, messages with plausible and implausible roles and content
parts, tools with odd schemas) so that the examples get past the first checks. Each
also goes through ``load_json`` as bytes, the way the API reads a body.

Deterministic (derandomized, no example database) and ~200 examples per property,
so the file runs in seconds and a CI run tries exactly what a local run tries.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aipk_site.gateway.chat_socket import ProtocolError, read_message
from aipk_site.gateway.formats import (
    InputLimits,
    ParsedRequest,
    parse_chat_completion,
    parse_messages,
)
from aipk_site.gateway.formats.common import load_json
from aipk_site.infra.errors import AipkError

# small limits, so examples reach the "too many" branches too
LIMITS = InputLimits(max_messages=6, max_message_chars=300, max_tools=3)
PARSERS: dict[str, Callable[..., ParsedRequest]] = {
    "openai": parse_chat_completion,
    "anthropic": parse_messages,
}
EXAMPLES = settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# text with the awkward characters: NUL, controls, lone surrogates, astral planes
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12) | st.sampled_from(
    ["", " ", "\x00", "\ud800", "user", "assistant", "system", "tool", "text", "function"]
)
NUMBERS = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, 1, -1, 2**31, 2**62, 2**63, 1.5, 1e300])
)
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)

FIELDS = [
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "top_k", "n", "seed", "stop", "stop_sequences", "stream", "stream_options", "tools",
    "tool_choice", "parallel_tool_calls", "user", "metadata", "system", "aipk",
]  # fmt: skip


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy = JSON_VALUES) -> st.SearchStrategy:
    """Usually a plausible value (so examples get past the first check), sometimes junk."""
    return st.one_of(good, good, good, bad)


ROLES = mostly(st.sampled_from(["user", "assistant", "system", "developer", "tool", "bot"]))
PART_TYPES = ["text", "refusal", "image_url", "image", "tool_use", "tool_result", "thinking"]
PARTS = st.fixed_dictionaries(
    {"type": mostly(st.sampled_from(PART_TYPES))},
    optional={
        "text": mostly(TEXT),
        "refusal": TEXT,
        "id": mostly(st.sampled_from(["call_1", "toolu_1", "call_1__sig_c2ln"]) | TEXT),
        "name": mostly(st.sampled_from(["get_weather", "f"]) | TEXT),
        "input": mostly(st.dictionaries(TEXT, JSON_VALUES, max_size=3)),
        "tool_use_id": mostly(st.sampled_from(["call_1", "toolu_1"]) | TEXT),
        "content": mostly(
            TEXT
            | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}), max_size=2)
        ),
        "is_error": JSON_VALUES,
    },
)
TOOL_CALLS = st.fixed_dictionaries(
    {
        "id": mostly(st.sampled_from(["call_1", "call_2__sig_c2ln"])),
        "function": mostly(
            st.fixed_dictionaries(
                {"name": mostly(st.just("get_weather"))},
                optional={"arguments": mostly(st.just('{"city": "Paris"}') | TEXT)},
            )
        ),
    },
    optional={"type": mostly(st.just("function"))},
)
MESSAGES = st.fixed_dictionaries(
    {"role": ROLES},
    optional={
        "content": mostly(TEXT | st.lists(PARTS, max_size=3)),
        "tool_calls": mostly(st.lists(TOOL_CALLS, max_size=2)),
        "tool_call_id": mostly(st.sampled_from(["call_1", "call_2__sig_c2ln"]) | TEXT),
        "name": TEXT,
    },
)
SCHEMAS = st.recursive(
    st.fixed_dictionaries({"type": mostly(st.sampled_from(["string", "integer", "boolean"]))}),
    lambda inner: (
        st.fixed_dictionaries(
            {"type": st.just("object")},
            optional={
                "properties": st.dictionaries(TEXT, inner, max_size=3),
                "required": JSON_VALUES,
            },
        )
        | st.fixed_dictionaries({"type": st.just("array"), "items": inner})
    ),
    max_leaves=8,
)
TOOLS = st.fixed_dictionaries(
    {},
    optional={
        "type": mostly(st.just("function")),
        "name": mostly(st.sampled_from(["get_weather", "f"]) | TEXT),
        "description": TEXT,
        "input_schema": mostly(SCHEMAS),
        "function": mostly(
            st.fixed_dictionaries(
                {"name": mostly(st.sampled_from(["get_weather", "f"]) | TEXT)},
                optional={"parameters": mostly(SCHEMAS), "description": TEXT},
            )
        ),
    },
)
REQUEST_LIKE = st.fixed_dictionaries(
    {
        "model": mostly(st.sampled_from(["openai/gpt-4o-mini", "smart"]), TEXT | JSON_VALUES),
        "messages": mostly(st.lists(MESSAGES, min_size=1, max_size=4)),
        "max_tokens": mostly(st.integers(min_value=1, max_value=4096), NUMBERS | JSON_VALUES),
    },
    optional={
        **{name: JSON_VALUES for name in FIELDS if name not in ("model", "messages", "max_tokens")},
        "temperature": mostly(st.floats(min_value=0, max_value=1), NUMBERS | JSON_VALUES),
        "stream": mostly(st.booleans()),
        "system": mostly(TEXT | st.lists(PARTS, max_size=2)),
        "tools": mostly(st.lists(TOOLS, max_size=4)),
        "tool_choice": mostly(
            st.sampled_from(["auto", "none", "required"])
            | st.fixed_dictionaries(
                {"type": st.sampled_from(["auto", "any", "tool", "function", "none"])},
                optional={
                    "name": st.sampled_from(["get_weather", "f"]),
                    "function": st.fixed_dictionaries({"name": st.sampled_from(["get_weather"])}),
                    "disable_parallel_tool_use": JSON_VALUES,
                },
            )
        ),
    },
)


NAMES = st.sampled_from(["get_weather", "get_time", "f"])
CALL_IDS = st.sampled_from(["call_1", "call_2__sig_c2ln", "toolu_01"])
WORDS = st.sampled_from(["hi", "", "Paris", "\u00e9t\u00e9 \U0001f600", "a\x00b"]) | TEXT

VALID_OPENAI = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["openai/gpt-4o-mini", "smart"]),
        "messages": st.lists(
            st.one_of(
                st.fixed_dictionaries(
                    {"role": st.sampled_from(["user", "system", "developer"]), "content": WORDS}
                ),
                st.fixed_dictionaries(
                    {
                        "role": st.just("user"),
                        "content": st.lists(
                            st.fixed_dictionaries({"type": st.just("text"), "text": WORDS}),
                            min_size=1,
                            max_size=3,
                        ),
                    }
                ),
                st.fixed_dictionaries(
                    {
                        "role": st.just("assistant"),
                        "content": st.none() | WORDS,
                        "tool_calls": st.lists(
                            st.fixed_dictionaries(
                                {
                                    "id": CALL_IDS,
                                    "type": st.just("function"),
                                    "function": st.fixed_dictionaries(
                                        {"name": NAMES, "arguments": st.just("{}") | WORDS}
                                    ),
                                }
                            ),
                            min_size=1,
                            max_size=2,
                        ),
                    }
                ),
                st.fixed_dictionaries(
                    {"role": st.just("tool"), "tool_call_id": CALL_IDS, "content": WORDS}
                ),
            ),
            min_size=1,
            max_size=4,
        ),
    },
    optional={
        "max_tokens": st.integers(min_value=1, max_value=4096),
        "max_completion_tokens": st.integers(min_value=1, max_value=4096),
        "temperature": st.floats(min_value=0, max_value=2),
        "top_p": st.floats(min_value=0, max_value=1),
        "stop": WORDS | st.lists(WORDS, max_size=2),
        "stream": st.booleans(),
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
        "n": st.just(1),
        "seed": st.integers(min_value=-(2**63), max_value=2**63 - 1),
        "user": WORDS,
        "parallel_tool_calls": st.booleans(),
        "tools": st.lists(
            st.fixed_dictionaries(
                {
                    "type": st.just("function"),
                    "function": st.fixed_dictionaries(
                        {"name": NAMES}, optional={"parameters": SCHEMAS, "description": WORDS}
                    ),
                }
            ),
            max_size=3,
        ),
        "tool_choice": st.sampled_from(["auto", "none", "required"])
        | st.fixed_dictionaries(
            {"type": st.just("function"), "function": st.fixed_dictionaries({"name": NAMES})}
        ),
        "aipk": st.fixed_dictionaries({"cache": st.booleans()}),
    },
)
ANTHROPIC_TEXT = st.fixed_dictionaries({"type": st.just("text"), "text": WORDS})
VALID_ANTHROPIC = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["anthropic/claude-3-5-haiku-20241022", "smart"]),
        "max_tokens": st.integers(min_value=1, max_value=4096),
        "messages": st.lists(
            st.one_of(
                st.fixed_dictionaries(
                    {
                        "role": st.sampled_from(["user", "assistant"]),
                        "content": WORDS | st.lists(ANTHROPIC_TEXT, min_size=1, max_size=2),
                    }
                ),
                st.fixed_dictionaries(
                    {
                        "role": st.just("assistant"),
                        "content": st.lists(
                            st.fixed_dictionaries(
                                {
                                    "type": st.just("tool_use"),
                                    "id": CALL_IDS,
                                    "name": NAMES,
                                    "input": st.dictionaries(TEXT, JSON_VALUES, max_size=2),
                                }
                            )
                            | ANTHROPIC_TEXT
                            | st.fixed_dictionaries(
                                {"type": st.just("thinking"), "thinking": WORDS}
                            ),
                            min_size=1,
                            max_size=3,
                        ),
                    }
                ),
                st.fixed_dictionaries(
                    {
                        "role": st.just("user"),
                        "content": st.lists(
                            st.fixed_dictionaries(
                                {"type": st.just("tool_result"), "tool_use_id": CALL_IDS},
                                optional={
                                    "content": WORDS | st.lists(ANTHROPIC_TEXT, max_size=2),
                                    "is_error": st.booleans(),
                                },
                            )
                            | ANTHROPIC_TEXT,
                            min_size=1,
                            max_size=3,
                        ),
                    }
                ),
            ),
            min_size=1,
            max_size=4,
        ),
    },
    optional={
        "system": WORDS | st.lists(ANTHROPIC_TEXT, max_size=2),
        "temperature": st.floats(min_value=0, max_value=1),
        "top_p": st.floats(min_value=0, max_value=1),
        "top_k": st.integers(min_value=0, max_value=500),
        "stop_sequences": st.lists(WORDS, max_size=2),
        "stream": st.booleans(),
        "metadata": st.fixed_dictionaries({"user_id": WORDS}),
        "tools": st.lists(
            st.fixed_dictionaries(
                {"name": NAMES, "input_schema": SCHEMAS}, optional={"description": WORDS}
            ),
            max_size=3,
        ),
        "tool_choice": st.fixed_dictionaries(
            {"type": st.sampled_from(["auto", "any", "none"])},
            optional={"disable_parallel_tool_use": st.booleans()},
        )
        | st.fixed_dictionaries({"type": st.just("tool"), "name": NAMES}),
        "aipk": st.fixed_dictionaries({"cache": st.booleans()}),
    },
)


def mutate(value: Any, index: int, junk: Any) -> Any:
    """``value`` with its ``index``-th node (in a walk of the tree) replaced by ``junk``:
    one wrong field deep inside an otherwise valid request."""
    value = copy.deepcopy(value)
    slots: list[tuple[Any, Any]] = []
    stack = [value]
    while stack:
        node = stack.pop()
        keys = node.keys() if isinstance(node, dict) else range(len(node))
        for key in keys:
            slots.append((node, key))
            if isinstance(node[key], dict | list):
                stack.append(node[key])
    if slots:
        node, key = slots[index % len(slots)]
        node[key] = junk
    return value


def mutated(valid: st.SearchStrategy) -> st.SearchStrategy:
    return st.builds(mutate, valid, st.integers(min_value=0, max_value=200), JSON_VALUES)


def parse_or_refuse(parse: Callable[..., ParsedRequest], value: Any) -> None:
    """Parse ``value`` directly and as a body; only a typed 4xx may come out."""
    for attempt in ("value", "body"):
        try:
            if attempt == "value":
                parse(value, LIMITS)
            else:
                raw = json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")
                parse(load_json(raw), LIMITS)
        except AipkError as error:
            assert 400 <= error.status < 500, (error.status, error.message)
            assert error.message


@pytest.mark.parametrize("fmt", PARSERS)
@EXAMPLES
@given(value=JSON_VALUES)
def test_it_accepts_or_refuses_any_json_value_with_a_4xx(fmt, value):
    parse_or_refuse(PARSERS[fmt], value)


VALID = {"openai": VALID_OPENAI, "anthropic": VALID_ANTHROPIC}


@pytest.mark.parametrize("fmt", PARSERS)
@EXAMPLES
@given(data=st.data())
def test_it_accepts_or_refuses_any_request_shaped_object_with_a_4xx(fmt, data):
    value = data.draw(REQUEST_LIKE | mutated(VALID[fmt]) | mutated(VALID[fmt]))
    parse_or_refuse(PARSERS[fmt], value)


OPTION_NAMES = [
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "user",
    "parallel_tool_calls",
    "cache",
]


def as_frame(request: Any, kind: Any, msg_id: Any, options: Any) -> Any:
    """A chat.request-like websocket message around a (possibly broken) request body."""
    if not isinstance(request, dict):
        return request
    frame = {**request, "type": kind, "id": msg_id}
    if options is not None:
        frame["options"] = options
    return frame


FRAMES = JSON_VALUES | st.builds(
    as_frame,
    mutated(VALID_OPENAI) | VALID_OPENAI,
    mostly(st.sampled_from(["chat.request", "chat.cancel", "ping"])),
    mostly(st.sampled_from(["r1", 7, "x" * 129])),
    st.none()
    | st.dictionaries(mostly(st.sampled_from(OPTION_NAMES), TEXT), JSON_VALUES, max_size=3),
)


@EXAMPLES
@given(value=FRAMES)
def test_it_reads_any_websocket_frame_or_answers_a_protocol_error(value):
    """The websocket's reader, over the same parser: only ProtocolError (a chat.error)."""
    frame = json.dumps(value, allow_nan=True)
    try:
        read_message(frame, max_bytes=1_000_000, limits=LIMITS)
    except ProtocolError as error:
        assert error.code and error.message
