"""What the adapters share about media parts: refusing what a provider cannot take,
inlining URLs a provider cannot fetch itself, and the token allowance of media.

Kept apart from the adapters so each adapter's own translation stays a few lines.
"""

from __future__ import annotations

import base64
import dataclasses

from . import errors, media_fetch
from .types import AudioPart, ChatRequest, FilePart, ImagePart, MediaPart, Message

__all__ = [
    "AUDIO_TOKENS_PER_SECOND",
    "DOCUMENT_TOKENS_PER_PAGE",
    "IMAGE_TOKENS",
    "inline_urls",
    "media_tokens",
    "media_tokens_bound",
    "refuse",
    "text_of",
]

# The prompt-token allowance of media, for estimates and budget reservations (the
# providers count media in prompt tokens, and a reservation must not undercount).
# Upper bounds of the providers' published rates: an image is at most ~1,600 tokens
# at Anthropic (1.15 megapixels / 750) and 1,105 at OpenAI high detail for 1024px;
# a PDF page ~1,500-3,000 at Anthropic (text plus the page image) and 258 at Gemini;
# audio 32 tokens a second at Gemini (OpenAI's audio models are close to it).
IMAGE_TOKENS = 1_600
DOCUMENT_TOKENS_PER_PAGE = 3_000
AUDIO_TOKENS_PER_SECOND = 32
# without a PDF parser the page count is estimated from the size: ~50 kB a page, at least 1
_PDF_BYTES_PER_PAGE = 50_000
# wav at 16 kHz 16-bit mono is 32 kB/s, mp3 at 128 kbit/s 16 kB/s: counting by the
# smaller rate overestimates the seconds of a wav, never underestimates an mp3
_AUDIO_BYTES_PER_SECOND = 16_000


# the content types a fetched URL may have (what the request parsers accept inline)
_IMAGE_FETCH = ("image/jpeg", "image/png", "image/gif", "image/webp")
_DOCUMENT_FETCH = ("application/pdf", "text/plain")


def _decoded_size(data: str | None) -> int:
    return (len(data or "") * 3) // 4


def media_tokens(part: MediaPart) -> int:
    """The documented allowance of one part (docs/GATEWAY.md "Images, files and audio")."""
    if isinstance(part, ImagePart):
        return IMAGE_TOKENS
    if isinstance(part, AudioPart):
        seconds = max(1, -(-_decoded_size(part.data) // _AUDIO_BYTES_PER_SECOND))
        return seconds * AUDIO_TOKENS_PER_SECOND
    if part.media_type == "text/plain" and part.data:
        return max(1, _decoded_size(part.data) // 4)  # plain text: the kit's chars / 4
    pages = max(1, -(-_decoded_size(part.data) // _PDF_BYTES_PER_PAGE))
    return pages * DOCUMENT_TOKENS_PER_PAGE


# Upper bounds for a budget reservation (tenants_app pricing.prompt_tokens_upper_bound),
# which must never undercount: an image costs at most ~2,700 tokens at any provider of
# the kit (OpenAI's patch-based models: 1,536 patches x 1.72); a document page at most
# ~3,000 (Anthropic: text plus the page as an image), and a compressed PDF may hold
# more text than bytes, so a document is bounded by max(bytes, pages x 3,000), pages
# counted from its page objects or its size; a document by URL (size unknown) by the
# providers' page limit (Anthropic reads at most 100 pages); audio by its length at
# the lowest mp3 bitrate (8 kbit/s = 1 kB/s) x 32 tokens a second.
IMAGE_TOKENS_BOUND = 3_000
URL_DOCUMENT_TOKENS_BOUND = 100 * DOCUMENT_TOKENS_PER_PAGE
_AUDIO_MIN_BYTES_PER_SECOND = 1_000


def media_tokens_bound(part: MediaPart) -> int:
    """The most prompt tokens ``part`` can cost on any provider (see above)."""
    if isinstance(part, ImagePart):
        return IMAGE_TOKENS_BOUND
    if isinstance(part, AudioPart):
        seconds = -(-_decoded_size(part.data) // _AUDIO_MIN_BYTES_PER_SECOND)
        return max(1, seconds) * AUDIO_TOKENS_PER_SECOND
    if not part.data:
        return URL_DOCUMENT_TOKENS_BOUND  # a URL or a provider's file id: size unknown
    raw = base64.b64decode(part.data)
    pages = max(
        1,
        raw.count(b"/Type /Page") - raw.count(b"/Type /Pages"),
        raw.count(b"/Type/Page") - raw.count(b"/Type/Pages"),
        -(-len(raw) // _PDF_BYTES_PER_PAGE),
    )
    return max(len(raw), pages * DOCUMENT_TOKENS_PER_PAGE)


def text_of(part: FilePart) -> str:
    """A text/plain document's text (for providers that take it as a text part)."""
    return base64.b64decode(part.data or "").decode("utf-8", errors="replace")


def refuse(provider: str, what: str, index: int) -> errors.InvalidRequestError:
    """A 400 naming the provider and the message: the provider cannot take this input."""
    return errors.InvalidRequestError(
        f"messages[{index}]: {provider} cannot take {what}",
        provider=provider,
        code="unsupported_media",
        status_code=400,
    )


def _needs_fetch(part: MediaPart, kinds: tuple[type, ...], keep_url: tuple[str, ...]) -> bool:
    url = getattr(part, "url", None)
    return bool(url) and isinstance(part, kinds) and not str(url).startswith(keep_url)


async def inline_urls(
    request: ChatRequest,
    provider: str,
    kinds: tuple[type, ...],
    *,
    keep_url: tuple[str, ...] = (),
) -> ChatRequest:
    """``request`` with the URL media of ``kinds`` fetched and sent as base64, for a
    provider that cannot fetch URLs itself; URLs starting with ``keep_url`` (the
    provider's own file URIs) stay. A URL that cannot be fetched safely is a 400."""
    if not any(_needs_fetch(p, kinds, keep_url) for m in request.messages for p in m.media()):
        return request
    messages: list[Message] = []
    fetched_bytes = 0
    limit = media_fetch.policy().max_request_bytes
    for index, message in enumerate(request.messages):
        if not message.parts:
            messages.append(message)
            continue
        parts = list(message.parts)
        for k, part in enumerate(parts):
            if not isinstance(part, ImagePart | FilePart) or not _needs_fetch(
                part, kinds, keep_url
            ):
                continue
            allowed = _IMAGE_FETCH if isinstance(part, ImagePart) else _DOCUMENT_FETCH
            try:
                fetched = await media_fetch.fetch_media(str(part.url), allowed)
            except media_fetch.MediaFetchError as exc:
                raise errors.InvalidRequestError(
                    f"messages[{index}]: the media URL for {provider} could not be fetched: {exc}",
                    provider=provider,
                    code="media_fetch_failed",
                    status_code=400,
                ) from None
            fetched_bytes += fetched.size
            if fetched_bytes > limit:
                raise errors.InvalidRequestError(
                    f"messages[{index}]: the media URLs of this request hold more than "
                    f"{limit} bytes",
                    provider=provider,
                    code="media_fetch_failed",
                    status_code=400,
                )
            parts[k] = dataclasses.replace(
                part, url=None, data=fetched.data, media_type=fetched.media_type
            )
        messages.append(dataclasses.replace(message, parts=parts))
    return dataclasses.replace(request, messages=messages)
