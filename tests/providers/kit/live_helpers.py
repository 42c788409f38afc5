"""Every registered provider as the kit sees it, each pointed at the simulator."""

from __future__ import annotations

from dataclasses import dataclass

from providers_app.kit.adapters import BaseAdapter, ProviderConfig
from providers_app.kit.providers import PROFILES
from providers_app.kit.types import ChatRequest, Message, Tool


@dataclass(frozen=True)
class Setup:
    """Where the simulator speaks a provider's wire, and a model it serves there."""

    path: str
    model: str

    def adapter(self, provider: str) -> type[BaseAdapter]:
        return PROFILES[provider].adapter


# one entry per registered provider (test_every_provider checks none is missing)
SETUPS = {
    "openai": Setup("/openai/v1", "gpt-4o-mini"),
    "anthropic": Setup("/anthropic", "claude-sonnet-4-20250514"),
    "gemini": Setup("/gemini", "gemini-2.0-flash"),
    "cerebras": Setup("/cerebras/v1", "llama3.1-8b"),
    "qwen": Setup("/qwen/v1", "qwen3-coder-plus"),
    "openrouter": Setup("/openrouter/api/v1", "openai/gpt-4o"),
    "openai-compatible": Setup("/openai/v1", "gpt-4o-mini"),
}
PROVIDERS = list(PROFILES)


def make_adapter(simulator, provider: str, **config) -> BaseAdapter:
    setup = SETUPS[provider]
    options = {"api_key": "sk-test-key-1234", "name": provider, **config}
    if PROFILES[provider].primary_credential == "oauth" and "api_key" not in config:
        # e.g. the Qwen portal takes the OAuth bearer from the device flow
        options = {"access_token": "qwen-oauth-token-5678", "name": provider, **config}
    return setup.adapter(provider)(ProviderConfig(base_url=simulator.url + setup.path, **options))


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
