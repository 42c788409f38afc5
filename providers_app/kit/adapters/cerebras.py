"""Cerebras: OpenAI-compatible, with per-day request limits in its headers and slow
first tokens on big models (the kit's default deadlines allow 600 s to the first byte)."""

from __future__ import annotations

from .base import catalog_model
from .openai import OpenAIAdapter


class CerebrasAdapter(OpenAIAdapter):
    provider_type = "cerebras"
    default_base_url = "https://api.cerebras.ai/v1"
    default_model_id = "llama3.1-8b"
    rate_limit_style = "cerebras"
    static_models = (
        catalog_model(
            "cerebras",
            "llama3.1-8b",
            "Llama 3.1 8B",
            context=8_192,
            price_in=0.10,
            price_out=0.10,
            vision=False,
        ),
        catalog_model(
            "cerebras",
            "llama-3.3-70b",
            "Llama 3.3 70B",
            context=8_192,
            price_in=0.85,
            price_out=1.20,
            vision=False,
        ),
        catalog_model(
            "cerebras",
            "qwen-3-32b",
            "Qwen 3 32B",
            context=16_384,
            price_in=0.40,
            price_out=0.80,
            vision=False,
        ),
    )
