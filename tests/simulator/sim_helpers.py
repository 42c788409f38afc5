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
