"""Visible reasoning: the text the simulated model "thinks" and the signatures on it.

Real providers sign thinking so it can only come back unchanged (Anthropic's
``signature`` on thinking blocks, Gemini's ``thoughtSignature``). The
simulator signs with an HMAC of the text under a process-wide key, so a
gateway that drops, reorders or edits a thinking block gets the same 400 the
real API gives, and one that carries it back byte for byte passes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from providers_app.simulator.behaviour import Conversation

_KEY = b"aipk-simulator-thinking-v1"

# Anthropic's documented test string: a request containing it gets a redacted_thinking block
REDACTED_TRIGGER = (
    "ANTHROPIC_MAGIC_STRING_TRIGGER_REDACTED_THINKING_46C9A13E193C177646C7398A98432ECCCE4C1253"
)


def text_for(conv: Conversation) -> str:
    if conv.tool_results is not None:
        return "The tool has answered; I will report what it said."
    if conv.last_is_user and conv.tools and conv.tool_mode != "none":
        return "The user's request needs a tool; I will call it."
    return f"Let me think about: {conv.last_user_text.strip()[:200]}"


def sign(text: str) -> str:
    digest = hmac.new(_KEY, text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify(text: str, signature: object) -> bool:
    return isinstance(signature, str) and hmac.compare_digest(sign(text), signature)


def redacted_data(text: str) -> str:
    """Opaque to the client, verifiable here: the text and its signature, encoded."""
    raw = json.dumps({"t": text, "s": sign(text)}).encode("utf-8")
    return base64.b64encode(raw).decode("ascii")


def verify_redacted(data: object) -> bool:
    if not isinstance(data, str):
        return False
    try:
        payload = json.loads(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        return False
    return isinstance(payload, dict) and verify(str(payload.get("t")), payload.get("s"))
