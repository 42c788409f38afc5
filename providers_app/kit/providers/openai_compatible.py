"""Any OpenAI-compatible endpoint (Groq, Ollama, LM Studio, vLLM ...): the OpenAI
adapter pointed at the admin's base URL, which is therefore required. Such
endpoints publish no OAuth defaults; an admin may still configure a client."""

from __future__ import annotations

from ..adapters.openai import OpenAIAdapter
from .profile import ProviderProfile

PROFILE = ProviderProfile(
    provider_type="openai-compatible",
    label="OpenAI-compatible endpoint",
    adapter=OpenAIAdapter,
    requires_base_url=True,
)
