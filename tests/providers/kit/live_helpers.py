"""The six providers as the kit sees them, each pointed at the simulator."""

from __future__ import annotations

from dataclasses import dataclass

from providers_app.kit.adapters import (
    AnthropicAdapter,
    BaseAdapter,
    CerebrasAdapter,
    GeminiAdapter,
    OpenAIAdapter,
    OpenRouterAdapter,
    ProviderConfig,
    QwenAdapter,
)
from providers_app.kit.types import ChatRequest, Message, Tool


@dataclass(frozen=True)
class Setup:
    adapter: type[BaseAdapter]
    path: str
    model: str


SETUPS = {
    "openai": Setup(OpenAIAdapter, "/openai/v1", "gpt-4o-mini"),
    "anthropic": Setup(AnthropicAdapter, "/anthropic", "claude-sonnet-4-20250514"),
    "gemini": Setup(GeminiAdapter, "/gemini", "gemini-2.0-flash"),
    "cerebras": Setup(CerebrasAdapter, "/cerebras/v1", "llama3.1-8b"),
    "qwen": Setup(QwenAdapter, "/qwen/v1", "qwen3-coder-plus"),
    "openrouter": Setup(OpenRouterAdapter, "/openrouter/api/v1", "openai/gpt-4o"),
}
PROVIDERS = list(SETUPS)
# providers whose error body has a structured code for "context too long"
# (OpenRouter only says so in words, which the kit never parses)
CONTEXT_LENGTH_CODED = ["openai", "cerebras", "qwen"]


def make_adapter(simulator, provider: str, **config) -> BaseAdapter:
    setup = SETUPS[provider]
    options = {"api_key": "sk-test-key-1234", **config}
    if provider == "qwen" and "api_key" not in config:
        # the Qwen portal takes the OAuth bearer from the device flow
        options = {"access_token": "qwen-oauth-token-5678", **config}
    return setup.adapter(ProviderConfig(base_url=simulator.url + setup.path, **options))


def ask(provider: str, text: str = "Hello there", **fields) -> ChatRequest:
    return ChatRequest(
        model=SETUPS[provider].model, messages=[Message(role="user", content=text)], **fields
    )


WEATHER = Tool(
    name="get_weather",
    description="Current weather for a city",
    parameters={
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
)
TIME = Tool(
    name="get_time",
    description="Local time in a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
