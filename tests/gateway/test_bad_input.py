"""Bad input on /v1, sent to the real aipk server: every case is a clear 4xx in the
caller's own error shape (OpenAI's on the OpenAI routes, Anthropic's on /v1/messages),
never a 500, never an HTML page, and a request refused for its body is still recorded."""

from __future__ import annotations

import json

import httpx
import pytest

from aipk_site.gateway.usage import usage_flush
from tenants_app.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "openai/gpt-4o-mini"
ANTHROPIC_MODEL = "anthropic/claude-3-5-haiku-20241022"
HUGE = 2**62


def post(gateway_server, secret: str, path: str, content: bytes | dict) -> httpx.Response:
    body = content if isinstance(content, bytes) else json.dumps(content).encode()
    return httpx.post(
        gateway_server.url + path,
        content=body,
        headers={"authorization": f"Bearer {secret}", "content-type": "application/json"},
        timeout=30,
    )


def openai_error(response: httpx.Response, status: int) -> dict:
    """The OpenAI error object of a JSON reply with this status."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    error = response.json()["error"]
    assert {"type", "code", "message", "param"} <= error.keys()
    return error


def anthropic_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    body = response.json()
    assert body["type"] == "error"
    return body["error"]


def chat_body(**fields) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **fields}


def messages_body(**fields) -> dict:
    return {
        "model": ANTHROPIC_MODEL,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
        **fields,
    }


def deep_schema(levels: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


# -- JSON nesting ---------------------------------------------------------------------------


def test_it_refuses_json_nested_100k_deep_in_openai_format(world, gateway_server):
    nested = b"[" * 100_000 + b"]" * 100_000
    body = b'{"model": "openai/gpt-4o-mini", "messages": ' + nested + b"}"
    error = openai_error(post(gateway_server, world.secret, "/v1/chat/completions", body), 400)
    assert error["param"] == "body"
    assert "nested deeper than 64 levels" in error["message"]


def test_it_refuses_json_nested_100k_deep_in_anthropic_format(world, gateway_server):
    nested = b"{" + b'"a":{' * 100_000 + b"}" * 100_001
    error = anthropic_error(post(gateway_server, world.secret, "/v1/messages", nested), 400)
    assert error["type"] == "invalid_request_error"
    assert "nested deeper than 64 levels" in error["message"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_it_refuses_a_tool_schema_nested_400_deep(world, gateway_server, path):
    if path == "/v1/messages":
        tool = {"name": "deep", "input_schema": deep_schema(400)}
        body = messages_body(tools=[tool])
    else:
        tool = {"type": "function", "function": {"name": "deep", "parameters": deep_schema(400)}}
        body = chat_body(tools=[tool])
    response = post(gateway_server, world.secret, path, body)
    error = (anthropic_error if path == "/v1/messages" else openai_error)(response, 400)
    assert "nested deeper than 64 levels" in error["message"]


def test_it_still_serves_a_tool_schema_of_realistic_depth(world, gateway_server):
    tool = {"type": "function", "function": {"name": "nested", "parameters": deep_schema(20)}}
    response = post(gateway_server, world.secret, "/v1/chat/completions", chat_body(tools=[tool]))
    assert response.status_code == 200, response.text[:300]


# -- text that is not Unicode ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body, param",
    [
        (
            b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", '
            b'"content": "hi \\ud800 there"}]}',
            "messages[0].content",
        ),
        (
            b'{"model": "openai/gpt-4o-\\udfff", "messages": [{"role": "user", "content": "hi"}]}',
            "model",
        ),
        (
            b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], '
            b'"tools": [{"type": "function", "function": {"name": "f", "parameters": '
            b'{"type": "object", "properties": {"\\ud800": {"type": "string"}}}}}]}',
            "tools[0].function.parameters.properties",
        ),
    ],
    ids=["content", "model", "schema-key"],
)
def test_it_refuses_a_json_escaped_lone_surrogate(world, gateway_server, body, param):
    error = openai_error(post(gateway_server, world.secret, "/v1/chat/completions", body), 400)
    assert error["param"] == param
    assert "surrogate" in error["message"]


@pytest.mark.parametrize(
    "raw", [b"\xed\xa0\x80", b"\xff\xfe", b"\xc3"], ids=["surrogate", "ff", "cut"]
)
def test_it_refuses_raw_bytes_that_are_not_utf8(world, gateway_server, raw):
    body = b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi ' + raw
    body += b'"}]}'
    error = openai_error(post(gateway_server, world.secret, "/v1/chat/completions", body), 400)
    assert error["param"] == "body"
    assert "UTF-8" in error["message"]
    error = anthropic_error(post(gateway_server, world.secret, "/v1/messages", body), 400)
    assert "UTF-8" in error["message"]


# -- integers out of range ------------------------------------------------------------------


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_it_refuses_max_tokens_of_2_to_the_62_in_openai_format(world, gateway_server, field):
    response = post(
        gateway_server, world.secret, "/v1/chat/completions", chat_body(**{field: HUGE})
    )
    error = openai_error(response, 400)
    assert error["param"] == field
    assert f"{field}: must be between 1 and 1000000, got {HUGE}" == error["message"]


def test_it_refuses_max_tokens_of_2_to_the_62_in_anthropic_format(world, gateway_server):
    response = post(gateway_server, world.secret, "/v1/messages", messages_body(max_tokens=HUGE))
    error = anthropic_error(response, 400)
    assert error["message"] == f"max_tokens: must be between 1 and 1000000, got {HUGE}"


@pytest.mark.parametrize(
    "path, field, value",
    [
        ("/v1/messages", "top_k", HUGE),
        ("/v1/chat/completions", "seed", 2**70),
        ("/v1/chat/completions", "n", HUGE),
        ("/v1/chat/completions", "max_tokens", 1e300),
    ],
)
def test_it_refuses_other_integers_out_of_range(world, gateway_server, path, field, value):
    body = (
        messages_body(**{field: value}) if path == "/v1/messages" else chat_body(**{field: value})
    )
    response = post(gateway_server, world.secret, path, body)
    error = (anthropic_error if path == "/v1/messages" else openai_error)(response, 400)
    assert error["message"].startswith(f"{field}: ")


# -- NUL ------------------------------------------------------------------------------------


def test_it_refuses_a_nul_in_the_model_and_still_records_the_request(world, gateway_server):
    response = post(
        gateway_server, world.secret, "/v1/chat/completions", chat_body(model="openai/gpt\x00-4o")
    )
    error = openai_error(response, 400)
    assert error["param"] == "model" and "NUL" in error["message"]
    usage_flush()
    (record,) = UsageRecord.objects.filter(tenant=world.tenant)
    assert (record.status, record.error_type, record.endpoint) == (
        "refused",
        "invalid_request",
        "chat.completions",
    )
    assert record.model == "openai/gpt\\u0000-4o"


# -- infrastructure down --------------------------------------------------------------------


@pytest.fixture
def redis_down(settings):
    """The shared cache pointed at a port where nothing listens (the server shares this
    process's settings, so it loses its cache too)."""
    from django.core.cache import caches

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",
        }
    }
    yield
    caches.close_all()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_it_answers_a_json_503_in_the_callers_format_when_redis_is_down(
    world, gateway_server, redis_down, path
):
    body = messages_body() if path == "/v1/messages" else chat_body()
    response = post(gateway_server, world.secret, path, body)
    if path == "/v1/messages":
        assert anthropic_error(response, 503)["type"]
    else:
        assert openai_error(response, 503)["code"] == "service_unavailable"
    assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize("anthropic", [False, True])
def test_it_still_lists_the_models_when_redis_is_down(world, gateway_server, redis_down, anthropic):
    """The key and the routes are held in this process's memory: the list needs no Redis."""
    headers = {"authorization": f"Bearer {world.secret}"}
    if anthropic:
        headers["anthropic-version"] = "2023-06-01"
    response = httpx.get(gateway_server.url + "/v1/models", headers=headers, timeout=30)
    assert response.status_code == 200, response.text[:300]
    assert any(m["id"] == world.model("openai") for m in response.json()["data"])


# -- paths and methods ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/nope", "/v1/chat/complete"])
def test_it_answers_an_unknown_path_with_a_json_404(world, gateway_server, path):
    response = httpx.post(gateway_server.url + path, json={}, timeout=30)
    error = openai_error(response, 404)
    assert error["type"] == "not_found_error" and path in error["message"]


def test_it_answers_an_unknown_path_in_anthropic_shape_for_anthropic_clients(gateway_server):
    response = httpx.get(
        gateway_server.url + "/v1/messages/batches", headers={"anthropic-version": "2023-06-01"}
    )
    assert anthropic_error(response, 404)["type"] == "not_found_error"


@pytest.mark.parametrize(
    "method, path",
    [("GET", "/v1/chat/completions"), ("DELETE", "/v1/models"), ("PUT", "/v1/messages")],
)
def test_it_answers_a_wrong_method_with_a_json_405(world, gateway_server, method, path):
    response = httpx.request(method, gateway_server.url + path, timeout=30)
    render = anthropic_error if path == "/v1/messages" else openai_error
    error = render(response, 405)
    assert method in error["message"]
    assert "allow" in response.headers


@pytest.mark.parametrize("path", ["/v1/models", "/api/tenants/"])
def test_it_answers_a_host_it_does_not_serve_with_json_400(gateway_server, path):
    response = httpx.get(gateway_server.url + path, headers={"host": "evil.example"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json"), response.text[:200]
    assert "evil.example" in response.json()["error"]["message"]
