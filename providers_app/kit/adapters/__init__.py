"""One module per wire protocol; the OpenAI-compatible providers are thin subclasses.

Which adapter serves which provider type is the registry's business
(``kit/providers``: ``ADAPTERS``, ``create_adapter``): each provider's profile
names its adapter.
"""

from __future__ import annotations

from .anthropic import AnthropicAdapter
from .base import BaseAdapter, ChatStream, Deadlines, ProviderConfig
from .cerebras import CerebrasAdapter
from .gemini import GeminiAdapter
from .openai import OpenAIAdapter
from .openrouter import OpenRouterAdapter
from .qwen import QwenAdapter

__all__ = [
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
]
