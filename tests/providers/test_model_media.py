"""Which models take media (images, documents, audio): the provider's list where it says
(OpenRouter's ``input_modalities``), else the adapter's static catalogue, else the
model's family (kit/adapters/model_families.py), else unknown -- for models found by
discovery as much as for catalogued ones. Lists fetched from the simulator over HTTP."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from providers_app.kit.adapters.model_families import family_takes_media
from providers_app.kit.providers import ADAPTERS
from providers_app.services.discovery import provider_adapter, usable_credential

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("model_id", "takes"),
    [
        ("gpt-oss-120b", False),
        ("openai/gpt-oss-20b:free", False),
        ("llama3.1-8b", False),
        ("llama-3.3-70b-versatile", False),
        ("meta-llama/llama-3.3-70b-instruct:free", False),
        ("qwen-3-32b", False),
        ("qwen3-coder-plus", False),
        ("o3-mini", False),
        ("deepseek-r1", False),
        ("gpt-4o-mini", True),
        ("gpt-5.4", True),
        ("o4-mini", True),
        ("claude-sonnet-4-6", True),
        ("anthropic/claude-sonnet-4", True),
        ("gemini-2.5-flash", True),
        ("llama-3.2-11b-vision-preview", True),
        ("meta-llama/llama-4-scout", True),
        ("qwen3-vl-plus", True),
        ("qwen-vl-max", True),
        ("qwen-plus", None),  # Qwen's general models changed over time: not guessed
        ("some-new-model", None),
    ],
)
def test_it_knows_which_model_families_take_media(model_id, takes):
    assert family_takes_media(model_id) is takes


def test_it_lets_the_catalogue_overrule_the_family():
    cerebras = ADAPTERS["cerebras"]()
    assert [m.supports_vision for m in cerebras.static_models if m.id == "llama3.1-8b"] == [False]
    assert cerebras.takes_media("llama3.1-8b") is False
    assert ADAPTERS["openai"]().takes_media("gpt-4o") is True


def listed(provider) -> dict[str, bool | None]:
    """{model id: supports_vision} as discovery gets the provider's list."""
    credential = usable_credential(provider)

    async def fetch():
        async with provider_adapter(provider, credential, own_client=True) as adapter:
            return {m.id: m.supports_vision for m in await adapter.fetch_models()}

    return async_to_sync(fetch)()


def test_it_marks_a_discovered_open_weight_model_text_only_by_its_family(make_provider):
    # Cerebras lists gpt-oss-120b; the adapter's catalogue does not know it
    models = listed(make_provider("cerebras"))
    assert "gpt-oss-120b" not in {m.id for m in ADAPTERS["cerebras"].static_models}
    assert models["gpt-oss-120b"] is False
    assert models["llama3.1-8b"] is False  # the catalogue's word


def test_it_takes_openrouters_own_word_on_what_each_model_takes(make_provider):
    models = listed(make_provider("openrouter"))
    assert models["openai/gpt-4o"] is True  # input_modalities text, image, file
    assert models["meta-llama/llama-3.3-70b-instruct:free"] is False  # text only


def test_it_leaves_a_model_no_one_knows_unknown(make_provider):
    models = listed(make_provider("qwen"))
    assert models["qwen-plus"] is None  # tried: the provider decides
    assert models["qwen3-coder-plus"] is False
