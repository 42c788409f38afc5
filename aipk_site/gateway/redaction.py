"""PII redaction: masks emails, phone numbers and payment card numbers before a
request leaves aipk (a tenant's opt-in, ``Tenant.pii_redaction``).

The patterns are written here by hand: no maintained small library does just
this, and Microsoft Presidio, the usual choice, pulls in spaCy and its language
models -- hundreds of megabytes and a slow start for three patterns.

Python's ``re`` backtracks, so every pattern is built to stay linear in the
text: a match may only start where a run of its characters starts (a
negative lookbehind), every repeat is bounded or unambiguous, and no repeat
nests inside another unbounded one. A megabyte of adversarial input costs one
pass, not a quadratic number of them (see tests/gateway/test_redaction.py).

It deliberately misses more than it catches wrongly: dates, times, IP
addresses, versions, order numbers and bare digit runs are left alone, so
phone numbers must look like phone numbers (a leading "+" or the familiar
3-3-4 grouping) and card numbers must pass the Luhn check.
"""

from __future__ import annotations

import json
import re
from typing import Any

from providers_app.kit.types import ChatRequest

EMAIL_MASK = "[EMAIL]"
PHONE_MASK = "[PHONE]"
CARD_MASK = "[CARD]"

# The local part may only start at the start of a run of its characters, and is at most
# 64 long (RFC 5321), so a long run without "@" is given up after 64 steps, once.
# Domain labels cannot contain ".", so each label matches one way; at most 10 of them.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])"
    r"[A-Za-z0-9._%+\-]{1,64}"
    r"@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,10}"
    r"[A-Za-z]{2,24}"
    r"(?![A-Za-z0-9\-])"
)

# 13 to 19 digits, single spaces or dashes allowed between them. A match may not start
# right after a digit (or a digit and a separator) nor stop right before one, so a
# longer digit run is no card; each repeat step is one digit, so the only backtracking
# is the at most 7 shorter lengths tried at one start.
_CARD = re.compile(r"(?<!\d)(?<!\d[ \-])\d(?:[ \-]?\d){12,18}(?!\d)(?![ \-]\d)")

# "+<country code>..." then digits, each optionally after one space, dot or dash, or an
# area code in parentheses; or the North American 3-3-4 grouping with one consistent
# separator, or "(555) 123-4567". Every step of the "+" form starts with a separator, a
# digit or "(", so it matches one way; its repeat is bounded, so a longer digit run is
# given up after at most 16 steps back. The digit count (7-15, E.164's limit) is checked
# after matching.
_PHONE = re.compile(
    r"(?<![\w+])(?<!\d[\-.])"
    r"(?:"
    r"\+\d(?:[ .\-]?(?:\(\d{1,4}\)|\d)){6,16}"
    r"|"
    r"(?:1[ .\-])?(?:\(\d{3}\) ?\d{3}[ .\-]|\d{3}(?P<sep>[ .\-])\d{3}(?P=sep))\d{4}"
    r")"
    r"(?!\w)(?![\-.]\d)"
)


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def redact_text(text: str) -> tuple[str, int]:
    """``text`` with emails, cards and phone numbers masked, and how many were."""
    count = 0

    def card(match: re.Match[str]) -> str:
        nonlocal count
        digits = re.sub(r"[ \-]", "", match.group())
        if _luhn_valid(digits):
            count += 1
            return CARD_MASK
        return match.group()

    def phone(match: re.Match[str]) -> str:
        nonlocal count
        digits = sum(ch.isdigit() for ch in match.group())
        if 7 <= digits <= 15:
            count += 1
            return PHONE_MASK
        return match.group()

    # Emails first (their local part may hold digits), then cards (a card's groups
    # could otherwise look like a phone number).
    text, emails = _EMAIL.subn(EMAIL_MASK, text)
    count += emails
    text = _CARD.sub(card, text)
    text = _PHONE.sub(phone, text)
    return text, count


def _redact_json_value(value: Any) -> tuple[Any, int]:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        total = 0
        items = []
        for item in value:
            item, n = _redact_json_value(item)
            items.append(item)
            total += n
        return items, total
    if isinstance(value, dict):
        total = 0
        result = {}
        for key, item in value.items():
            result[key], n = _redact_json_value(item)
            total += n
        return result, total
    return value, 0


def _redact_arguments(arguments: str) -> tuple[str, int]:
    """Tool-call arguments are JSON text: redact the string values inside it, so an
    escape such as "\\n" before a number cannot hide it; text that is not JSON is
    redacted as it is. Arguments without PII are returned byte for byte."""
    try:
        parsed = json.loads(arguments)
    except (TypeError, ValueError):
        return redact_text(arguments)
    redacted, count = _redact_json_value(parsed)
    if not count:
        return arguments, 0
    return json.dumps(redacted, ensure_ascii=False), count


SECRET_MASK = "[SECRET]"

# Key and token shapes, for text aipk keeps (the request log's captured bodies): a caller
# pasting a key into a message must not find it in the log. Each form is a fixed prefix
# then a run of key characters, and may only start where a run of those characters
# starts (the lookbehind), so an input of "sk-sk-sk-..." is one pass, not quadratic.
# OpenAI (sk-, sk-proj-), Anthropic (sk-ant-), OpenRouter (sk-or-) and most
# OpenAI-compatible providers use sk-; then Stripe's secret keys, aipk's own virtual keys
# and admin tokens, Google (AIza), GitHub, Slack and AWS access keys, a bearer token
# written out, a JWT.
_SECRET = re.compile(
    r"(?<![A-Za-z0-9_\-])"
    r"(?:"
    r"(?:sk|aipk|aipkadm)-[A-Za-z0-9_\-]{16,}"
    r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|AIza[0-9A-Za-z_\-]{30,}"
    r"|(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}"
    r"|xox[abprs]-[A-Za-z0-9\-]{10,}"
    r"|AKIA[0-9A-Z]{16}"
    r"|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"
    r")"
    r"|(?<![A-Za-z])(?i:bearer)\s{1,8}[A-Za-z0-9._~+/=\-]{16,}"
)


def mask_secrets(text: str) -> tuple[str, int]:
    """``text`` with key- and token-shaped strings replaced by [SECRET], and how many."""
    return _SECRET.subn(SECRET_MASK, text)


def redact_for_log(value: Any) -> Any:
    """A JSON-like value (strings, lists, dicts) as the request log keeps it: PII masked
    as ``redact_text`` does, and key-shaped strings too, in every string, keys excepted."""
    if isinstance(value, str):
        return mask_secrets(redact_text(value)[0])[0]
    if isinstance(value, list):
        return [redact_for_log(item) for item in value]
    if isinstance(value, dict):
        return {key: redact_for_log(item) for key, item in value.items()}
    return value


def redact_request(request: ChatRequest) -> int:
    """Mask PII in every message (tool results included) and every tool call's
    arguments, in place; returns how many items were masked."""
    total = 0
    for message in request.messages:
        if isinstance(message.content, str) and message.content:
            message.content, n = redact_text(message.content)
            total += n
        for call in message.tool_calls:
            if call.arguments:
                call.arguments, n = _redact_arguments(call.arguments)
                total += n
    return total
