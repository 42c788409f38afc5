"""Reading the captured provider transcripts in tests/fixtures/wire/."""

from __future__ import annotations

import json
import random
from pathlib import Path

from providers_app.kit.adapters.base import BaseAdapter
from providers_app.kit.types import ChatChunk, ChatRequest, Message, ResponseBuilder

WIRE = Path(__file__).parents[2] / "fixtures" / "wire"

REQUEST = ChatRequest(model="m", messages=[Message(role="user", content="hi")])


def wire_bytes(name: str) -> bytes:
    return (WIRE / name).read_bytes()


def wire_json(name: str):
    return json.loads(wire_bytes(name))


def read_http(name: str) -> tuple[int, dict[str, str], dict]:
    """A captured HTTP reply: status line, header lines, blank line, JSON body."""
    head, _, body = (WIRE / name).read_text().partition("\n\n")
    lines = [line for line in head.splitlines() if line and not line.startswith("#")]
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return status, headers, json.loads(body)


def random_splits(data: bytes, rng: random.Random) -> list[bytes]:
    """Cut bytes at random places -- mid-line, mid-CRLF, mid UTF-8 character."""
    pieces, start = [], 0
    while start < len(data):
        size = rng.choice((1, 2, 3, 5, 8, 13, 64, 500))
        pieces.append(data[start : start + size])
        start += size
    return pieces


def decode(adapter: BaseAdapter, pieces: list[bytes]) -> list[ChatChunk]:
    """Drive the exact reader a live stream uses, piece by piece, then close it."""
    reader = adapter.stream_reader(REQUEST)
    chunks: list[ChatChunk] = []
    for piece in pieces:
        chunks.extend(reader.feed(piece))
    chunks.extend(reader.close())
    return chunks


def fold(chunks: list[ChatChunk]):
    builder = ResponseBuilder()
    for chunk in chunks:
        builder.add(chunk)
    return builder.build()
