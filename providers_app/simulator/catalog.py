"""Model lists per provider, in each provider's own list format.

Serialised once at import: answering ``GET .../models`` costs one memory copy.
Chat routes accept any model id; these lists only feed model discovery.
"""

from __future__ import annotations

import json

_CREATED = 1715367049  # a fixed timestamp: lists are static, so tests can compare them


def _openai_entry(model_id: str, owned_by: str) -> dict:
    return {"id": model_id, "object": "model", "created": _CREATED, "owned_by": owned_by}


OPENAI_MODELS = [
    _openai_entry(m, "system")
    for m in ("gpt-5.4", "gpt-5.4-mini", "gpt-5", "gpt-5-mini", "gpt-4.1", "gpt-4o", "gpt-4o-mini")
]

CEREBRAS_MODELS = [
    _openai_entry("llama3.1-8b", "Meta"),
    _openai_entry("llama-3.3-70b", "Meta"),
    _openai_entry("qwen-3-32b", "Qwen"),
    _openai_entry("gpt-oss-120b", "OpenAI"),
]

QWEN_MODELS = [
    _openai_entry(m, "system")
    for m in ("qwen3-coder-plus", "qwen3-coder-flash", "qwen-max", "qwen-plus", "qwen-turbo")
]


def _openrouter_entry(
    model_id: str,
    name: str,
    context: int,
    max_completion: int,
    prompt: str,
    completion: str,
    inputs: tuple[str, ...] = ("text",),
) -> dict:
    return {
        "id": model_id,
        "canonical_slug": model_id.split(":")[0],
        "name": name,
        "created": _CREATED,
        "description": f"{name} (simulated).",
        "context_length": context,
        "architecture": {
            "modality": "+".join(inputs) + "->text",
            "input_modalities": list(inputs),
            "output_modalities": ["text"],
            "tokenizer": "Other",
            "instruct_type": None,
        },
        "pricing": {"prompt": prompt, "completion": completion, "request": "0", "image": "0"},
        "top_provider": {
            "context_length": context,
            "max_completion_tokens": max_completion,
            "is_moderated": False,
        },
        "per_request_limits": None,
        "supported_parameters": [
            "max_tokens",
            "temperature",
            "top_p",
            "tools",
            "tool_choice",
            "stop",
        ],
        "default_parameters": None,
        "expiration_date": None,
        "knowledge_cutoff": None,
        "links": {"details": f"/api/v1/models/{model_id}/endpoints"},
    }


OPENROUTER_MODELS = [
    _openrouter_entry(
        "openai/gpt-4o",
        "OpenAI: GPT-4o",
        128000,
        16384,
        "0.0000025",
        "0.00001",
        inputs=("text", "image", "file"),
    ),
    _openrouter_entry(
        "anthropic/claude-sonnet-4",
        "Anthropic: Claude Sonnet 4",
        200000,
        64000,
        "0.000003",
        "0.000015",
        inputs=("text", "image", "file"),
    ),
    _openrouter_entry(
        "google/gemini-2.5-flash",
        "Google: Gemini 2.5 Flash",
        1048576,
        65535,
        "0.0000003",
        "0.0000025",
        inputs=("text", "image", "file", "audio", "video"),
    ),
    _openrouter_entry(
        "meta-llama/llama-3.3-70b-instruct:free",
        "Meta: Llama 3.3 70B Instruct (free)",
        131072,
        4096,
        "0",
        "0",
    ),
]

ANTHROPIC_MODELS = [
    {"type": "model", "id": model_id, "display_name": name, "created_at": created}
    for model_id, name, created in (
        ("claude-opus-4-6", "Claude Opus 4.6", "2026-02-05T00:00:00Z"),
        ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z"),
        ("claude-opus-4-5-20251101", "Claude Opus 4.5", "2025-11-01T00:00:00Z"),
        ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01T00:00:00Z"),
        ("claude-sonnet-4-20250514", "Claude Sonnet 4", "2025-05-14T00:00:00Z"),
    )
]

_GENERATE = ["generateContent", "countTokens", "createCachedContent", "streamGenerateContent"]
GEMINI_MODELS = [
    {
        "name": f"models/{model_id}",
        "version": version,
        "displayName": name,
        "description": f"{name} (simulated).",
        "inputTokenLimit": input_limit,
        "outputTokenLimit": output_limit,
        "supportedGenerationMethods": methods,
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
    }
    for model_id, version, name, input_limit, output_limit, methods in (
        (
            "gemini-3-pro-preview",
            "3-pro-preview",
            "Gemini 3 Pro Preview",
            1048576,
            65536,
            _GENERATE,
        ),
        ("gemini-2.5-pro", "2.5", "Gemini 2.5 Pro", 1048576, 65536, _GENERATE),
        ("gemini-2.5-flash", "001", "Gemini 2.5 Flash", 1048576, 65536, _GENERATE),
        ("gemini-2.5-flash-lite", "001", "Gemini 2.5 Flash-Lite", 1048576, 65536, _GENERATE),
        ("gemini-2.0-flash", "2.0", "Gemini 2.0 Flash", 1048576, 8192, _GENERATE),
        ("text-embedding-004", "004", "Text Embedding 004", 2048, 1, ["embedContent"]),
    )
]


def _encode(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def openai_list(models: list[dict]) -> bytes:
    return _encode({"object": "list", "data": models})


OPENAI_LIST = openai_list(OPENAI_MODELS)
CEREBRAS_LIST = openai_list(CEREBRAS_MODELS)
QWEN_LIST = openai_list(QWEN_MODELS)
OPENROUTER_LIST = _encode({"data": OPENROUTER_MODELS})
ANTHROPIC_LIST = _encode(
    {
        "data": ANTHROPIC_MODELS,
        "has_more": False,
        "first_id": ANTHROPIC_MODELS[0]["id"],
        "last_id": ANTHROPIC_MODELS[-1]["id"],
    }
)
GEMINI_LIST = _encode({"models": GEMINI_MODELS})


def by_id(models: list[dict], key: str = "id") -> dict[str, bytes]:
    return {m[key]: _encode(m) for m in models}


ANTHROPIC_BY_ID = by_id(ANTHROPIC_MODELS)
GEMINI_BY_NAME = by_id(GEMINI_MODELS, "name")
