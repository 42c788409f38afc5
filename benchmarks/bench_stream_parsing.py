"""Per-chunk cost of turning provider stream bytes into normalised ChatChunks.

No network. For each wire protocol a realistic stream of N text deltas is
built in that provider's own format (the shape of the captured fixtures in
tests/fixtures/wire/), then fed through ``adapter.stream_reader(request)`` --
the exact code path a live stream takes -- in pieces of several sizes.

Measured per SSE event (median of several repeats, ``time.perf_counter_ns``):

* ``json.loads``   -- bare decode of every event's data payload: the floor any
                      parser has to pay, whatever it is written in;
* ``SSE parser``   -- ``SSEParser.feed`` over the pieces, then ``flush``;
* ``decoder``      -- the provider's StreamDecoder over pre-parsed events
                      (JSON decode + mapping to ChatChunk);
* ``reader``       -- ``StreamReader.feed`` + ``close``: SSE + decoder + bookkeeping.

Usage::

    .venv/bin/python benchmarks/bench_stream_parsing.py            # N=20000, 9 repeats
    .venv/bin/python benchmarks/bench_stream_parsing.py --quick    # N=2000, 3 repeats
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from _common import environment, markdown_table, median, words

from providers_app.kit.adapters import AnthropicAdapter, GeminiAdapter, OpenAIAdapter
from providers_app.kit.adapters.base import BaseAdapter, ProviderConfig
from providers_app.kit.sse import SSEParser
from providers_app.kit.types import ChatRequest, Message

FEEDS: list[tuple[str, int | None]] = [
    ("1 event/feed", None),
    ("1 KiB", 1024),
    ("4 KiB", 4096),
    ("64 KiB", 65536),  # what httpx hands over per read on loopback
]


@dataclass
class Stream:
    protocol: str
    adapter: BaseAdapter
    events: list[bytes]  # one entry per SSE event, exactly as it is on the wire
    payloads: list[str]  # the JSON data of every event (what json.loads must decode)
    text: str  # the reply the stream carries
    text_deltas: int


def _compact(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _pieces(tokens: list[str]) -> list[str]:
    return [t if i == 0 else " " + t for i, t in enumerate(tokens)]


def openai_stream(n: int) -> Stream:
    """Chat completion chunks with include_usage, as in openai_chat_stream_text_usage.sse."""
    head = {
        "id": "chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL",
        "object": "chat.completion.chunk",
        "created": 1727346168,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_5050236cbd",
    }

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {
            **head,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    parts = _pieces(words(n))
    objects = [chunk({"role": "assistant", "content": "", "refusal": None})]
    objects += [chunk({"content": p}) for p in parts]
    objects.append(chunk({}, "stop"))
    objects.append(
        {
            **head,
            "choices": [],
            "usage": {
                "prompt_tokens": 14,
                "completion_tokens": n,
                "total_tokens": n + 14,
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        }
    )
    payloads = [_compact(o) for o in objects] + ["[DONE]"]
    events = [f"data: {p}\n\n".encode() for p in payloads]
    return Stream(
        "OpenAI",
        OpenAIAdapter(ProviderConfig(api_key="sk-bench")),
        events,
        payloads[:-1],
        "".join(parts),
        n,
    )


def anthropic_stream(n: int) -> Stream:
    """Messages API events, as in anthropic_messages_stream_text.sse."""
    parts = _pieces(words(n))
    named: list[tuple[str, dict]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": "claude-3-opus-latest",
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 11, "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    named += [
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
        )
        for p in parts
    ]
    named += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": n},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    payloads = [_compact(o) for _, o in named]
    events = [
        f"event: {name}\ndata: {p}\n\n".encode()
        for (name, _), p in zip(named, payloads, strict=True)
    ]
    return Stream(
        "Anthropic",
        AnthropicAdapter(ProviderConfig(api_key="sk-ant-bench")),
        events,
        payloads,
        "".join(parts),
        n,
    )


def gemini_stream(n: int) -> Stream:
    """streamGenerateContent?alt=sse chunks with CRLF line ends, as in gemini_stream_text.sse."""
    parts = _pieces(words(n))
    usage = {
        "promptTokenCount": 7,
        "totalTokenCount": 7,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 7}],
    }
    objects = []
    for i, p in enumerate(parts):
        candidate: dict = {"content": {"parts": [{"text": p}], "role": "model"}}
        chunk_usage = usage
        if i == len(parts) - 1:
            candidate["finishReason"] = "STOP"
            chunk_usage = {
                "promptTokenCount": 7,
                "candidatesTokenCount": n,
                "totalTokenCount": n + 7,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 7}],
                "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": n}],
            }
        objects.append(
            {
                "candidates": [candidate],
                "usageMetadata": chunk_usage,
                "modelVersion": "gemini-2.0-flash",
            }
        )
    # Google's own spacing: ", " never, ": " always, as captured
    payloads = [json.dumps(o, separators=(",", ": "), ensure_ascii=False) for o in objects]
    events = [f"data: {p}\r\n\r\n".encode() for p in payloads]
    return Stream(
        "Gemini",
        GeminiAdapter(ProviderConfig(api_key="AIza-bench")),
        events,
        payloads,
        "".join(parts),
        n,
    )


def split(events: list[bytes], size: int | None) -> list[bytes]:
    if size is None:
        return list(events)
    blob = b"".join(events)
    return [blob[i : i + size] for i in range(0, len(blob), size)]


def timed_interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each function in ns.

    The functions are run round-robin (one warm-up round first) so that a
    noisy neighbour on the machine slows every variant alike instead of
    skewing the one that happened to be running.
    """
    for fn in fns.values():
        fn()
    samples: dict[str, list[int]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.collect()
            start = time.perf_counter_ns()
            fn()
            samples[name].append(time.perf_counter_ns() - start)
    return {name: median(values) for name, values in samples.items()}


def check(stream: Stream, request: ChatRequest, pieces: list[bytes]) -> None:
    """The benchmark is only meaningful if the reader really decodes the stream."""
    reader = stream.adapter.stream_reader(request)
    chunks = [c for p in pieces for c in reader.feed(p)]
    chunks.extend(reader.close())
    text = "".join(c.text for c in chunks)
    deltas = sum(1 for c in chunks if c.text)
    finishes = [c.finish_reason for c in chunks if c.finish_reason]
    assert text == stream.text, f"{stream.protocol}: decoded text differs"
    assert deltas == stream.text_deltas, (
        f"{stream.protocol}: {deltas} text chunks, expected {stream.text_deltas}"
    )
    assert finishes == ["stop"], f"{stream.protocol}: finish reasons {finishes}"


def run(n: int, repeats: int) -> tuple[str, str]:
    request = ChatRequest(
        model="bench-model", messages=[Message(role="user", content="Say something long.")]
    )
    fixed_rows, feed_rows = [], []
    for stream in (openai_stream(n), anthropic_stream(n), gemini_stream(n)):
        n_events = len(stream.events)
        n_bytes = sum(len(e) for e in stream.events)
        adapter = stream.adapter
        parsed = SSEParser().feed(b"".join(stream.events))
        fns: dict[str, Callable[[], object]] = {
            "json": _json_only(stream.payloads),
            "decoder": _decoder_only(adapter, request, parsed),
        }
        pieces_by_feed = {}
        for label, size in FEEDS:
            pieces = pieces_by_feed[label] = split(stream.events, size)
            check(stream, request, pieces)
            fns[f"sse {label}"] = _sse_only(pieces)
            fns[f"reader {label}"] = _reader_full(adapter, request, pieces)
        ns = {name: total / n_events for name, total in timed_interleaved(fns, repeats).items()}
        json_ns = ns["json"]
        fixed_rows.append(
            [
                stream.protocol,
                n_events,
                f"{n_bytes / n_events:.0f}",
                f"{json_ns / 1000:.2f}",
                f"{ns['decoder'] / 1000:.2f}",
                f"{(ns['decoder'] - json_ns) / 1000:.2f}",
            ]
        )
        for label, _ in FEEDS:
            reader_ns = ns[f"reader {label}"]
            feed_rows.append(
                [
                    stream.protocol,
                    label,
                    len(pieces_by_feed[label]),
                    f"{ns[f'sse {label}'] / 1000:.2f}",
                    f"{reader_ns / 1000:.2f}",
                    f"{json_ns / 1000:.2f}",
                    f"{(reader_ns - json_ns) / 1000:.2f}",
                    f"{reader_ns / json_ns:.1f}x",
                    f"{n_bytes / (reader_ns * n_events) * 1000:.0f}",
                ]
            )
    fixed = markdown_table(
        [
            "protocol",
            "events",
            "bytes/event",
            "json.loads µs/event",
            "decoder µs/event",
            "decoder − json.loads µs",
        ],
        fixed_rows,
    )
    feeds = markdown_table(
        [
            "protocol",
            "feed",
            "feeds",
            "SSE parser µs/event",
            "reader µs/event",
            "json.loads µs/event",
            "reader − json.loads µs",
            "reader / json.loads",
            "reader MB/s",
        ],
        feed_rows,
    )
    return fixed, feeds


def _json_only(payloads: list[str]) -> Callable[[], None]:
    loads = json.loads

    def fn() -> None:
        for p in payloads:
            loads(p)

    return fn


def _decoder_only(adapter: BaseAdapter, request: ChatRequest, parsed: list) -> Callable[[], None]:
    def fn() -> None:
        decoder = adapter.stream_decoder(request)
        for event in parsed:
            for _ in decoder.feed(event):
                pass
        for _ in decoder.finish():
            pass

    return fn


def _sse_only(pieces: list[bytes]) -> Callable[[], None]:
    def fn() -> None:
        parser = SSEParser()
        for piece in pieces:
            parser.feed(piece)
        parser.flush()

    return fn


def _reader_full(
    adapter: BaseAdapter, request: ChatRequest, pieces: list[bytes]
) -> Callable[[], None]:
    def fn() -> None:
        # feed() and close() may return lazy iterators: consume them as a live stream does
        reader = adapter.stream_reader(request)
        for piece in pieces:
            for _ in reader.feed(piece):
                pass
        for _ in reader.close():
            pass

    return fn


def large_event(sizes_mib: list[int], repeats: int) -> str:
    """One event with a multi-MiB data line (a Gemini inlineData image, a huge tool argument).

    Real reads end mid-line; the parser keeps the unfinished line as its tail.
    The "whole" row feeds the event in one piece: the linear-cost reference.
    """
    rows = []
    for mib in sizes_mib:
        payload = json.dumps(
            {
                "candidates": [
                    {
                        "content": {
                            "parts": [
                                {
                                    "inlineData": {
                                        "mimeType": "image/png",
                                        "data": "iVBORw0KGgo" * (mib * 1024 * 1024 // 11),
                                    }
                                }
                            ],
                            "role": "model",
                        }
                    }
                ]
            }
        )
        blob = f"data: {payload}\r\n\r\n".encode()
        for label, size in (("whole", None), ("64 KiB", 65536), ("16 KiB", 16384), ("4 KiB", 4096)):
            pieces = (
                [blob] if size is None else [blob[i : i + size] for i in range(0, len(blob), size)]
            )

            parse = _parse_one_event(pieces, len(payload))
            total = timed_interleaved({"parse": parse}, repeats)["parse"]
            rows.append(
                [
                    f"{len(blob) / 2**20:.1f} MiB",
                    label,
                    len(pieces),
                    f"{total / 1e6:.1f}",
                    f"{len(blob) / total * 1000:.0f}",
                ]
            )
    return markdown_table(["event size", "feed", "feeds", "SSE parser ms (median)", "MB/s"], rows)


def _parse_one_event(pieces: list[bytes], data_len: int) -> Callable[[], None]:
    def fn() -> None:
        parser = SSEParser()
        events = [e for piece in pieces for e in parser.feed(piece)] + parser.flush()
        assert len(events) == 1 and len(events[0].data) == data_len

    return fn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="short run: N=2000 text deltas, 3 repeats"
    )
    parser.add_argument("-n", type=int, help="text deltas per stream (default 20000)")
    parser.add_argument("--repeats", type=int, help="timed repeats per measurement (default 9)")
    args = parser.parse_args()
    n = args.n or (2000 if args.quick else 20000)
    repeats = args.repeats or (3 if args.quick else 9)
    started = time.perf_counter()
    fixed, feeds = run(n, repeats)
    print(f"## Stream parsing: {n} text deltas per stream, median of {repeats} repeats\n")
    print(f"{environment()}; load average at start {os.getloadavg()[0]:.2f}\n")
    print("### JSON decode floor and provider decoder (independent of how bytes are fed)\n")
    print(fixed + "\n")
    print("### SSE parser and full StreamReader, by feed size\n")
    print(feeds + "\n")
    sizes = [1] if args.quick else [1, 4]
    print(
        f"### One large event split into pieces (SSE parser alone, median of {min(repeats, 3)})\n"
    )
    print(large_event(sizes, min(repeats, 3)) + "\n")
    took = time.perf_counter() - started
    print(f"(run took {took:.1f} s; load average at end {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
