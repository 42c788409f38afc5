"""The incremental SSE parser, byte by byte."""

from __future__ import annotations

import random

from providers_app.kit.sse import DONE, SSEEvent, SSEParser


def parse_in_pieces(data: bytes, sizes) -> list[SSEEvent]:
    parser, events, start = SSEParser(), [], 0
    for size in sizes:
        events += parser.feed(data[start : start + size])
        start += size
    events += parser.feed(data[start:])
    return events + parser.flush()


def parse_all_ways(data: bytes) -> list[SSEEvent]:
    """Whole, byte by byte, and 50 random cuttings must all agree."""
    whole = parse_in_pieces(data, [])
    assert parse_in_pieces(data, [1] * len(data)) == whole
    rng = random.Random(len(data))
    for _ in range(50):
        assert parse_in_pieces(data, [rng.randint(1, 7) for _ in range(len(data))]) == whole
    return whole


def test_it_reads_data_only_events_ending_in_done():
    events = parse_all_ways(b'data: {"a":1}\n\ndata: {"a":2}\n\ndata: [DONE]\n\n')
    assert [e.data for e in events] == ['{"a":1}', '{"a":2}', DONE]
    assert all(e.event == "message" for e in events)


def test_it_keeps_event_names_and_ignores_comments_and_pings():
    events = parse_all_ways(
        b': keep-alive\n\nevent: ping\ndata: {}\n\n:comment\nevent: message_stop\ndata: {"x":1}\n\n'
    )
    assert [(e.event, e.data) for e in events] == [("ping", "{}"), ("message_stop", '{"x":1}')]


def test_it_joins_multi_line_data_with_newlines():
    [event] = parse_all_ways(b"data: first\ndata:second\ndata:  third\n\n")
    # one optional space after the colon is dropped, no more
    assert event.data == "first\nsecond\n third"


def test_it_accepts_lf_cr_and_crlf_line_ends_even_split_between_cr_and_lf():
    for sep in (b"\n", b"\r", b"\r\n"):
        events = parse_all_ways(b"data: one" + sep + sep + b"data: two" + sep + sep)
        assert [e.data for e in events] == ["one", "two"]


def test_it_reassembles_utf8_characters_split_across_reads():
    text = "Grüße, 世界 🚀"
    events = parse_all_ways(f"data: {text}\n\n".encode())
    assert events[0].data == text


def test_it_flushes_the_last_event_when_the_stream_ends_without_a_blank_line():
    events = parse_all_ways(b"event: a\ndata: 1\n\nevent: message_stop\ndata: 2")
    assert [(e.event, e.data) for e in events] == [("a", "1"), ("message_stop", "2")]


def test_it_reads_id_and_retry_fields():
    [event] = parse_all_ways(b"id: 42\nretry: 1500\ndata: x\n\n")
    assert (event.id, event.retry) == ("42", 1500)


def test_it_hands_back_lines_that_are_not_sse_fields_as_one_raw_block():
    events = parse_all_ways(b'data: {"ok":1}\n\n{\n  "error": {\n    "code": 499\n  }\n}\n')
    assert events[0].data == '{"ok":1}'
    assert events[1].raw and events[1].data == '{\n  "error": {\n    "code": 499\n  }\n}'


def test_it_keeps_only_the_incomplete_tail_between_feeds():
    parser = SSEParser()
    for _ in range(1000):
        parser.feed(b'data: {"chunk": "some text"}\n\n')
    parser.feed(b"data: partial")
    assert parser._pending == ["data: partial"]  # noqa: SLF001 - proves nothing else is retained


def test_it_reads_a_long_line_arriving_in_many_small_reads():
    payload = "x" * (1 << 20)
    data = f"data: {payload}\n\n".encode()
    parser = SSEParser()
    events = []
    for start in range(0, len(data), 4096):
        events += parser.feed(data[start : start + 4096])
    assert [len(e.data) for e in events + parser.flush()] == [len(payload)]
