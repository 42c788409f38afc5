"""Qwen: OpenAI-compatible, either the Qwen portal (OAuth bearer from the device
flow) or Alibaba's DashScope compatible-mode endpoint (API key). It sends no
rate-limit headers, so callers pair it with a token bucket sized by its
profile (``kit/providers/qwen.py``: 60 requests a minute, 2,000 a day)."""

from __future__ import annotations

from .base import catalog_model
from .openai import OpenAIAdapter

PORTAL_BASE_URL = "https://portal.qwen.ai/v1"
DASHSCOPE_BASE_URL = "https://dashscope.aliyuncs.com/compatible-mode/v1"


class QwenAdapter(OpenAIAdapter):
    provider_type = "qwen"
    default_base_url = PORTAL_BASE_URL
    default_model_id = "qwen3-coder-plus"
    rate_limit_style = "none"
    static_models = (
        catalog_model(
            "qwen", "qwen3-coder-plus", "Qwen3 Coder Plus", context=1_000_000, vision=False
        ),
        catalog_model(
            "qwen", "qwen3-coder-flash", "Qwen3 Coder Flash", context=1_000_000, vision=False
        ),
    )
