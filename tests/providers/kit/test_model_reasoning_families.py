"""Which model families have a reasoning mode (model search's ``reasoning`` capability):
documented families by their bare id, whichever provider serves them; unknown is None."""

from __future__ import annotations

import pytest

from providers_app.kit.adapters.model_families import family_reasons


@pytest.mark.parametrize(
    ("model_id", "reasons"),
    [
        ("gpt-5", True),
        ("gpt-5.4-mini", True),
        ("gpt-5-chat-latest", False),
        ("o3-mini", True),
        ("o4-mini", True),
        ("gpt-oss-120b", True),
        ("openai/gpt-oss-20b:free", True),
        ("gpt-4o", False),
        ("gpt-4.1", False),
        ("claude-sonnet-4-20250514", True),
        ("anthropic/claude-sonnet-4", True),
        ("claude-3-7-sonnet-latest", True),
        ("claude-3-5-haiku-latest", False),
        ("gemini-2.5-flash", True),
        ("google/gemini-2.5-flash", True),
        ("gemini-2.0-flash", False),
        ("deepseek-r1", True),
        ("qwen-3-32b", True),
        ("qwq-32b", True),
        ("qwen3-235b-a22b", True),
        ("qwen3-coder-plus", False),
        ("llama3.1-8b", None),
        ("meta-llama/llama-3.3-70b-instruct:free", None),
    ],
)
def test_it_knows_which_model_families_reason(model_id, reasons):
    assert family_reasons(model_id) is reasons


def test_it_judges_media_from_the_adapter_class_alone():
    from providers_app.kit.providers import ADAPTERS

    # a classmethod: model search asks it without building an adapter (no config, no client)
    assert ADAPTERS["cerebras"].takes_media("llama3.1-8b") is False
    assert ADAPTERS["openai"].takes_media("gpt-4o") is True
