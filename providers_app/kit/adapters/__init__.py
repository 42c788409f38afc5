"""One module per wire protocol; the OpenAI-compatible providers are thin subclasses.

``ADAPTERS`` maps a provider type to its adapter class; "openai-compatible"
is the OpenAI adapter pointed at any base_url (Groq, Ollama, LM Studio ...).
"""

from __future__ import annotations

import httpx

from .anthropic import AnthropicAdapter
from .base import BaseAdapter, ChatStream, Deadlines, ProviderConfig
from .cerebras import CerebrasAdapter
from .gemini import GeminiAdapter
from .openai import OpenAIAdapter
from .openrouter import OpenRouterAdapter
from .qwen import QwenAdapter

ADAPTERS: dict[str, type[BaseAdapter]] = {
    "openai": OpenAIAdapter,
    "anthropic": AnthropicAdapter,
    "gemini": GeminiAdapter,
    "cerebras": CerebrasAdapter,
    "qwen": QwenAdapter,
    "openrouter": OpenRouterAdapter,
    "openai-compatible": OpenAIAdapter,
}


def create_adapter(
    provider_type: str,
    config: ProviderConfig,
    *,
    client: httpx.AsyncClient | None = None,
    limiter: object = None,
) -> BaseAdapter:
    try:
        cls = ADAPTERS[provider_type]
    except KeyError:
        raise ValueError(
            f"unknown provider type {provider_type!r}; expected one of {sorted(ADAPTERS)}"
        ) from None
    if provider_type == "openai-compatible" and not config.base_url:
        raise ValueError("an openai-compatible provider needs a base_url")
    return cls(config, client=client, limiter=limiter)


__all__ = [
    "ADAPTERS",
    "AnthropicAdapter",
    "BaseAdapter",
    "CerebrasAdapter",
    "ChatStream",
    "Deadlines",
    "GeminiAdapter",
    "OpenAIAdapter",
    "OpenRouterAdapter",
    "ProviderConfig",
    "QwenAdapter",
    "create_adapter",
]
