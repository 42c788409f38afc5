"""What is known about a model family whichever provider serves it: here, whether its
models take media (images, documents, audio) as input.

Providers' model lists mostly do not say (OpenAI's, Anthropic's, Gemini's, Cerebras'
and DashScope's entries carry an id and little else; OpenRouter's ``input_modalities``
is the exception, read by its adapter), and the same open-weight family is served by
several of them under near-identical ids (``gpt-oss-120b`` on Cerebras,
``openai/gpt-oss-120b`` on OpenRouter). So a discovered model that no adapter's static
catalogue lists is judged by its family here; the catalogue, where it lists the model,
wins (``BaseAdapter.takes_media``).

Only families whose whole line is documented one way are listed: a model that is not
matched is unknown (None), and its request is sent for the provider to judge. A
``False`` here turns a request with media into aipk's 400 naming the model instead of
a provider's error (or, worse, a provider silently ignoring the image).
"""

from __future__ import annotations

import re

# (pattern on the bare model id, lower-cased, without an OpenRouter-style "vendor/"
# prefix; takes media). The first match wins, so narrower rules come first.
_FAMILIES: tuple[tuple[re.Pattern[str], bool], ...] = tuple(
    (re.compile(pattern), takes)
    for pattern, takes in (
        # -- text only: each family's model cards list text input only
        (r"^gpt-oss", False),  # OpenAI's open-weight models
        (r"^gpt-3\.5", False),
        (r"^o1-(mini|preview)|^o3-mini", False),  # no image input (o1, o3, o4-mini have it)
        (r"^(meta-)?llama-?3(\.[13])?-", False),  # Llama 3, 3.1, 3.3 (3.2 vision: below)
        (r"^qwen-?3-(coder|\d)", False),  # Qwen3 text models (Qwen3-VL: "vl", below)
        (r"^deepseek-(r1|v3|chat|reasoner|coder)", False),
        (r"^(mistral-7b|mixtral|codestral)", False),
        # -- media: each family's model cards list image input
        (r"^gpt-(4o|4\.1|4-turbo|5)", True),
        (r"^(o1|o3|o4-mini)(\b|-\d|$)", True),
        (r"^claude-(3|[a-z]+-4)", True),  # Claude 3 and every Claude 4 model
        (r"^gemini-(1\.5|2|3)", True),
        (r"^(meta-)?llama-?4", True),
        (r"^(meta-)?llama-?3\.2-\d+b-vision", True),
        (r"(^|[-.])vl([-.]|$)|^qvq|omni|^pixtral", True),
    )
)


def _bare(model_id: str) -> str:
    """``vendor/model:variant`` -> ``model``: the family is in the model's own name."""
    return model_id.rsplit("/", 1)[-1].split(":", 1)[0].lower()


def family_takes_media(model_id: str) -> bool | None:
    """Whether ``model_id``'s family takes media; None when no rule knows it."""
    bare = _bare(model_id)
    for pattern, takes in _FAMILIES:
        if pattern.search(bare):
            return takes
    return None


# (pattern on the bare model id; reasons). Families whose model cards document a
# reasoning ("thinking") mode that the reasoning_effort / thinking request field drives.
# Unmatched is unknown (None): model search leaves it out of "reasoning".
_REASONING_FAMILIES: tuple[tuple[re.Pattern[str], bool], ...] = tuple(
    (re.compile(pattern), reasons)
    for pattern, reasons in (
        (r"^gpt-5(\.\d+)?-chat", False),  # the chat variants answer without reasoning
        (r"^gpt-(4|3\.5)", False),
        (r"^gpt-5|^gpt-oss|^o[134](\b|-|$)", True),
        (r"^claude-3-7|^claude-[a-z]+-4|^claude-4", True),
        (r"^claude-", False),
        (r"^gemini-(2\.5|3)", True),
        (r"^gemini-", False),
        (r"^qwen-?3-coder", False),  # Qwen3-Coder is a non-thinking line
        (r"^deepseek-(r1|reasoner)|^qwq|^qwen-?3-\d|^magistral", True),
    )
)


def family_reasons(model_id: str) -> bool | None:
    """Whether ``model_id``'s family has a reasoning mode; None when no rule knows it."""
    bare = _bare(model_id)
    for pattern, reasons in _REASONING_FAMILIES:
        if pattern.search(bare):
            return reasons
    return None
