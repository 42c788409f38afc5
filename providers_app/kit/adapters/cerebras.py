"""Cerebras: OpenAI-compatible, with per-day request limits in its headers and slow
first tokens on big models (hence the 120 s default timeout)."""

from __future__ import annotations

from ..types import ModelInfo
from .openai import OpenAIAdapter


def _model(model_id: str, context: int, price_in: float, price_out: float) -> ModelInfo:
    return ModelInfo(
        id=model_id,
        name=model_id,
        provider="cerebras",
        context_window=context,
        input_price_per_million=price_in,
        output_price_per_million=price_out,
    )


class CerebrasAdapter(OpenAIAdapter):
    provider_type = "cerebras"
    default_base_url = "https://api.cerebras.ai/v1"
    default_model_id = "llama3.1-8b"
    default_timeout = 120.0
    rate_limit_style = "cerebras"
    static_models = (
        _model("llama3.1-8b", 8_192, 0.10, 0.10),
        _model("llama-3.3-70b", 8_192, 0.85, 1.20),
        _model("qwen-3-32b", 16_384, 0.40, 0.80),
    )
