"""Small shared helpers for the simulator tests (tool definitions, clients)."""

import anthropic
import openai
from google import genai
from google.genai import types

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "units": {"type": "string", "enum": ["c", "f"]},
        "days": {"type": "integer"},
    },
    "required": ["city"],
}
STOCK_SCHEMA = {
    "type": "object",
    "properties": {"ticker": {"type": "string"}, "exact": {"type": "boolean"}},
}
WEATHER_ARGS = {"city": "city-value", "units": "c", "days": 1}
STOCK_ARGS = {"ticker": "ticker-value", "exact": True}

OPENAI_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}},
    {"type": "function", "function": {"name": "get_stock_price", "parameters": STOCK_SCHEMA}},
]
ANTHROPIC_TOOLS = [
    {"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA},
    {"name": "get_stock_price", "description": "Stocks", "input_schema": STOCK_SCHEMA},
]


def openai_client(base_url: str, key: str = "sk-test-1234", **kwargs) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, **kwargs)


def anthropic_client(
    simulator, key: str = "sk-ant-test-1234", **kwargs
) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=simulator.base_url("anthropic"), api_key=key, max_retries=0, **kwargs
    )


def gemini_client(simulator, key: str = "AIza-test-1234", timeout_ms: int = 10_000) -> genai.Client:
    return genai.Client(
        api_key=key,
        http_options=types.HttpOptions(
            base_url=simulator.base_url("gemini"),
            timeout=timeout_ms,
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )


# Every chat wire of the simulator, for tests that must hold on all of them.
PROVIDERS = ("openai", "cerebras", "qwen", "openrouter", "anthropic", "gemini", "code_assist")
DEFAULT_MODELS = {
    "openai": "gpt-4o",
    "cerebras": "llama3.1-8b",
    "qwen": "qwen-plus",
    "openrouter": "openai/gpt-4o",
    "anthropic": "claude-sonnet-4-6",
    "gemini": "gemini-2.5-flash",
    "code_assist": "gemini-2.5-flash",
}
DEFAULT_KEYS = {
    "openai": "sk-test-1234",
    "cerebras": "csk-test-1234",
    "qwen": "sk-qwen-1234",
    "openrouter": "sk-or-v1-1234",
    "anthropic": "sk-ant-test-1234",
    "gemini": "AIza-test-1234",
    "code_assist": "ya29.test-1234",
}


def raw_chat(
    simulator,
    provider: str,
    *,
    model: str | None = None,
    text: str = "hello there",
    stream: bool = False,
    key: str | None = None,
    headers: dict | None = None,
    max_tokens: int | None = None,
    messages: list | None = None,
) -> tuple[str, dict, dict]:
    """(url, headers, json body) of a chat request in ``provider``'s own wire format.

    ``messages`` (OpenAI shape: role + text content) replaces the one user
    message; it is translated to Anthropic blocks or Gemini contents as is,
    roles untouched, so unknown roles reach each wire.
    """
    model = model or DEFAULT_MODELS[provider]
    key = key or DEFAULT_KEYS[provider]
    messages = messages or [{"role": "user", "content": text}]
    sent = dict(headers or {})
    if provider in ("openai", "cerebras", "qwen", "openrouter"):
        url = simulator.base_url(provider) + "/chat/completions"
        sent["authorization"] = f"Bearer {key}"
        body: dict = {"model": model, "messages": messages, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        return url, sent, body
    if provider == "anthropic":
        url = simulator.base_url("anthropic") + "/v1/messages"
        sent.update({"x-api-key": key, "anthropic-version": "2023-06-01"})
        body = {
            "model": model,
            "max_tokens": max_tokens or 8192,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "stream": stream,
        }
        return url, sent, body
    request = {
        "contents": [{"role": m["role"], "parts": [{"text": m["content"]}]} for m in messages]
    }
    if max_tokens is not None:
        request["generationConfig"] = {"maxOutputTokens": max_tokens}
    method = "streamGenerateContent" if stream else "generateContent"
    query = "?alt=sse" if stream else ""
    if provider == "gemini":
        sent["x-goog-api-key"] = key
        url = f"{simulator.base_url('gemini')}/v1beta/models/{model}:{method}{query}"
        return url, sent, request
    sent["authorization"] = f"Bearer {key}"
    url = f"{simulator.base_url('gemini')}/v1internal:{method}{query}"
    return url, sent, {"model": model, "project": "sim-project", "request": request}


def reply_text(provider: str, body: dict) -> str:
    """The text of a non-stream reply in any wire format."""
    if provider == "anthropic":
        return "".join(b.get("text", "") for b in body["content"])
    if provider in ("gemini", "code_assist"):
        response = body.get("response", body)
        return "".join(p.get("text", "") for p in response["candidates"][0]["content"]["parts"])
    return body["choices"][0]["message"]["content"] or ""


def usage_of(provider: str, body: dict) -> tuple[int, int]:
    """(prompt tokens, completion tokens) of a non-stream reply in any wire format."""
    if provider == "anthropic":
        return body["usage"]["input_tokens"], body["usage"]["output_tokens"]
    if provider in ("gemini", "code_assist"):
        usage = body.get("response", body)["usageMetadata"]
        return usage["promptTokenCount"], usage["candidatesTokenCount"]
    return body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]
