"""PII redaction of requests before they leave aipk."""

from __future__ import annotations

import json

import pytest

from aipk_site.gateway.redaction import redact_request, redact_text
from providers_app.kit.types import ChatRequest, Message, ToolCall


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe@example.com today", "write to [EMAIL] today"),
        ("cc: J.Smith+billing@mail.corp.example.co.uk.", "cc: [EMAIL]."),
        ("<ops_team-1@intra.example.io>", "<[EMAIL]>"),
    ],
)
def test_it_masks_emails(text, expected):
    assert redact_text(text) == (expected, 1)


@pytest.mark.parametrize(
    "phone",
    [
        "+1 (555) 123-4567",
        "+1 555 123 4567",
        "+44 20 7946 0958",
        "+442079460958",
        "+33 1 23 45 67 89",
        "+49-30-1234567",
        "555-123-4567",
        "555.123.4567",
        "555 123 4567",
        "(555) 123-4567",
        "1-800-555-1234",
    ],
)
def test_it_masks_phone_numbers(phone):
    assert redact_text(f"call me on {phone}, thanks") == ("call me on [PHONE], thanks", 1)


@pytest.mark.parametrize(
    "card",
    [
        "4111111111111111",  # Visa
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5555 5555 5555 4444",  # Mastercard
        "3782 822463 10005",  # Amex, 15 digits
        "4222222222222",  # 13 digits
        "6011 0009 9013 9424",  # Discover
    ],
)
def test_it_masks_luhn_valid_card_numbers(card):
    assert redact_text(f"pay with {card} now") == ("pay with [CARD] now", 1)


@pytest.mark.parametrize(
    "text",
    [
        "the meeting is on 2024-01-15 at 10:30:45",
        "born 15/01/1990, renewed 01.02.2024, due 2024.03.31",
        "ssh to 192.168.100.200 or 10.0.0.1",
        "order #123456789 and ORD-2024-000123 shipped",
        "tracking 1Z999AA10123456784",
        "answer 42, PIN 1234, room 5551234",
        "version 1.2.3 and 10.4.12.1",
        "total $1,234.56 (+5 points, +100 bonus)",
        "card-like but not Luhn: 4111 1111 1111 1112",
        "too long for a card: 12345678901234567890123",
        "id 550e8400-e29b-41d4-a716-446655440000",
        "serial 555-123-4567-8899",
        "not an email: user@localhost or @handle or a@b",
    ],
)
def test_it_leaves_other_numbers_and_text_alone(text):
    assert redact_text(text) == (text, 0)


def test_it_masks_messages_tool_calls_and_tool_results_in_place():
    args = json.dumps({"to": "bob@example.com", "note": "line\n555-123-4567", "n": 3})
    request = ChatRequest(
        model="smart",
        messages=[
            Message(role="system", content="Support agent. Escalate to boss@example.com."),
            Message(role="user", content="My card 4111 1111 1111 1111 was charged twice"),
            Message(
                role="assistant",
                content=None,
                tool_calls=[
                    ToolCall(id="c1", name="email", arguments=args),
                    ToolCall(id="c2", name="lookup", arguments='{"order": "ORD-2024-000123"}'),
                    ToolCall(id="c3", name="raw", arguments="not json: +44 20 7946 0958"),
                ],
            ),
            Message(
                role="tool",
                tool_call_id="c1",
                content='{"sent_to": "bob@example.com", "card": "5555555555554444"}',
            ),
        ],
    )
    assert redact_request(request) == 7

    system, user, assistant, tool = request.messages
    assert system.content == "Support agent. Escalate to [EMAIL]."
    assert user.content == "My card [CARD] was charged twice"
    assert assistant.content is None
    assert json.loads(assistant.tool_calls[0].arguments) == {
        "to": "[EMAIL]",
        "note": "line\n[PHONE]",
        "n": 3,
    }
    # arguments without PII stay byte for byte as the model wrote them
    assert assistant.tool_calls[1].arguments == '{"order": "ORD-2024-000123"}'
    assert assistant.tool_calls[2].arguments == "not json: [PHONE]"
    assert tool.content == '{"sent_to": "[EMAIL]", "card": "[CARD]"}'


def test_it_counts_nothing_in_a_clean_request():
    request = ChatRequest(
        model="smart", messages=[Message(role="user", content="Ship order 12345 on 2024-05-01")]
    )
    assert redact_request(request) == 0
    assert request.messages[0].content == "Ship order 12345 on 2024-05-01"


def test_it_masks_several_items_in_one_text():
    text = "a@example.com, b@example.org; +1 555 123 4567; 4111111111111111 and 555-123-4567"
    assert redact_text(text) == ("[EMAIL], [EMAIL]; [PHONE]; [CARD] and [PHONE]", 5)


@pytest.mark.parametrize(
    "unit",
    [
        "a",
        "a@",
        "a.",
        "@.",
        "1",
        "1 ",
        "1-",
        "+1",
        "(555) ",
        "555-555-",
        "+1234567890123456789 ",
        "a1-@. +(",
    ],
)
def test_it_gets_through_a_megabyte_of_adversarial_text(unit):
    # Linear patterns finish in well under a second here; a backtracking one would
    # not finish at all. Timing goals live in benchmarks/, so this only runs it.
    text = unit * (1_000_000 // len(unit))
    redacted, count = redact_text(text)
    assert count == 0 and redacted == text


def test_it_gets_through_a_megabyte_of_near_misses():
    text = ("x@" + "a." * 40 + " 4111 1111 1111 1112 +1 5 ") * 8_000
    redacted, _ = redact_text(text)
    assert len(redacted) == len(text)
