"""Validation of media content (images, documents, audio) shared by the wire formats.

Each format reads its own shapes (OpenAI parts, Anthropic blocks) and calls these
helpers, so both refuse the same bad input the same way: a 400 naming the field
(``messages[0].content[1].image_url.url``). What is checked here, before anything
reaches a provider: data-URL syntax, base64, the media types each kind allows (the
intersection of what OpenAI, Anthropic and Gemini accept), http(s)-only URLs, and
the decoded size of each part and of all parts of one request
(``InputLimits.max_media_part_bytes`` / ``max_media_request_bytes``).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .common import InputLimits, invalid

__all__ = [
    "AUDIO_FORMATS",
    "DOCUMENT_TYPES",
    "IMAGE_TYPES",
    "MediaTally",
    "check_base64",
    "check_media_type",
    "check_url",
    "parse_data_url",
]

# what every provider of the kit accepts (Anthropic's list is the shortest)
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
DOCUMENT_TYPES = ("application/pdf", "text/plain")
AUDIO_FORMATS = ("wav", "mp3")

_DATA_URL = re.compile(r"^data:([a-zA-Z0-9.+-]+/[a-zA-Z0-9.+-]+)((?:;[^;,]*)*);base64,(.*)$", re.S)


@dataclass
class MediaTally:
    """Counts the decoded bytes of one request's media against the request limit."""

    limits: InputLimits
    total: int = 0

    def add(self, size: int, where: str) -> None:
        if size > self.limits.max_media_part_bytes:
            raise invalid(
                f"is {size} bytes; the limit per part is {self.limits.max_media_part_bytes}",
                where,
            )
        self.total += size
        if self.total > self.limits.max_media_request_bytes:
            raise invalid(
                f"media in this request total {self.total} bytes; the limit is "
                f"{self.limits.max_media_request_bytes}",
                where,
            )


def check_base64(data: object, where: str) -> int:
    """The decoded size of standard base64 ``data``; 400 when it is not base64."""
    if not isinstance(data, str) or not data:
        raise invalid("must be a non-empty base64 string", where)
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("is not valid base64", where) from None
    if not decoded:
        raise invalid("must not be empty", where)
    return len(decoded)


def check_media_type(media_type: object, allowed: tuple[str, ...], where: str) -> str:
    if not isinstance(media_type, str) or media_type.lower() not in allowed:
        shown = media_type if isinstance(media_type, str) else type(media_type).__name__
        raise invalid(f"{shown!r} is not supported: use one of {', '.join(allowed)}", where)
    return media_type.lower()


def parse_data_url(url: str, allowed: tuple[str, ...], where: str) -> tuple[str, str, int]:
    """``data:<type>;base64,<data>`` -> (media type, base64 data, decoded size)."""
    match = _DATA_URL.match(url)
    if match is None:
        raise invalid("must be a data URL of the form data:<media type>;base64,<data>", where)
    media_type = check_media_type(match.group(1), allowed, where)
    data = match.group(3)
    return media_type, data, check_base64(data, where)


def check_url(url: object, where: str) -> str:
    """An http(s) URL with a host; anything else (file:, ftp:, javascript:) is a 400."""
    if not isinstance(url, str) or not url:
        raise invalid("must be a non-empty string", where)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid("must be an http(s) URL or a data: URL", where)
    return url
