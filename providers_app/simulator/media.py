"""Images, documents and audio in the three wire formats, as the simulator sees them.

Each wire module asks two things of a message's content: is any media part
malformed (the real API answers 400, and so does the simulator, in its own
words), and what media did it carry. The answer is a marker per part appended to
the message's text -- ``[image: image/png]``, ``[file: application/pdf]``,
``[audio: wav]``, ``[image: url]`` -- so the reply (``Simulated reply to: ...``)
proves which media reached the "model", and the request log keeps the body.

``/_sim/media/{name}`` serves small media files (``pixel.png``, ``doc.pdf``,
``note.txt``; ``redirect-png`` redirects to ``pixel.png``; ``loop`` redirects to
itself, ``redirect-metadata`` to 169.254.169.254) so tests can make aipk fetch a
URL from the loopback simulator.
"""

from __future__ import annotations

import base64
import binascii
import re

from aiohttp import web

__all__ = [
    "PIXEL_PNG",
    "anthropic_error",
    "anthropic_markers",
    "gemini_error",
    "gemini_markers",
    "media_file",
    "openai_error",
    "openai_markers",
]

# a 1x1 transparent PNG
PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
TINY_PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)(?:;[^,]*)?;base64,(.*)$", re.S)


def _b64_ok(data: object) -> bool:
    if not isinstance(data, str) or not data:
        return False
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


# ---------------------------------------------------------------- OpenAI


def openai_markers(content: object) -> list[str]:
    out: list[str] = []
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "image_url":
            url = str((part.get("image_url") or {}).get("url") or "")
            match = _DATA_URL.match(url)
            out.append(f"[image: {match.group(1) if match else 'url'}]")
        elif kind == "file":
            spec = part.get("file") or {}
            match = _DATA_URL.match(str(spec.get("file_data") or ""))
            out.append(f"[file: {match.group(1) if match else 'file_id'}]")
        elif kind == "input_audio":
            out.append(f"[audio: {(part.get('input_audio') or {}).get('format')}]")
    return out


def openai_error(messages: list) -> tuple[str, str] | None:
    """(message, param) of the first malformed media part, as OpenAI words it."""
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        for k, part in enumerate(content if isinstance(content, list) else []):
            if not isinstance(part, dict):
                continue
            where = f"messages[{i}].content[{k}]"
            kind = part.get("type")
            if kind == "image_url":
                url = (part.get("image_url") or {}).get("url")
                if not isinstance(url, str):
                    return (f"Missing required parameter: '{where}.image_url.url'.", where)
                if url.startswith("data:"):
                    match = _DATA_URL.match(url)
                    if match is None or match.group(1) not in _IMAGE_TYPES:
                        return (
                            f"Invalid '{where}.image_url.url'. Expected a base64-encoded data "
                            "URL with an image MIME type (e.g. 'data:image/png;base64,...').",
                            f"{where}.image_url.url",
                        )
                    if not _b64_ok(match.group(2)):
                        return (
                            "You uploaded an unsupported image. Please make sure your image "
                            "is valid.",
                            f"{where}.image_url.url",
                        )
            elif kind == "file":
                spec = part.get("file") or {}
                data = spec.get("file_data")
                if data is None and not spec.get("file_id"):
                    return (f"Missing required parameter: '{where}.file.file_data'.", where)
                if data is not None:
                    match = _DATA_URL.match(str(data))
                    if match is None or not _b64_ok(match.group(2)):
                        return (
                            f"Invalid '{where}.file.file_data'. Expected a base64-encoded data "
                            "URL.",
                            f"{where}.file.file_data",
                        )
            elif kind == "input_audio":
                spec = part.get("input_audio") or {}
                if spec.get("format") not in ("wav", "mp3"):
                    return (
                        f"Invalid value: '{spec.get('format')}'. Supported values are: 'wav' "
                        "and 'mp3'.",
                        f"{where}.input_audio.format",
                    )
                if not _b64_ok(spec.get("data")):
                    return ("Invalid audio data.", f"{where}.input_audio.data")
    return None


# ---------------------------------------------------------------- Anthropic


def anthropic_markers(content: object) -> list[str]:
    out: list[str] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict) or block.get("type") not in ("image", "document"):
            continue
        source = block.get("source") or {}
        kind = "image" if block["type"] == "image" else "file"
        label = source.get("media_type") or source.get("type")
        out.append(f"[{kind}: {label}]")
    return out


def _anthropic_media_blocks(messages: list) -> list[tuple[str, dict]]:
    """(path, block) of every image and document block, those inside a tool_result's
    content included (Anthropic takes them there too)."""
    found: list[tuple[str, dict]] = []
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        for k, block in enumerate(content if isinstance(content, list) else []):
            if not isinstance(block, dict):
                continue
            inner = block.get("content") if block.get("type") == "tool_result" else None
            for j, part in enumerate(inner if isinstance(inner, list) else []):
                if isinstance(part, dict) and part.get("type") in ("image", "document"):
                    found.append((f"messages.{i}.content.{k}.tool_result.content.{j}", part))
            if block.get("type") in ("image", "document"):
                found.append((f"messages.{i}.content.{k}", block))
    return found


def anthropic_error(messages: list) -> str | None:
    for at, block in _anthropic_media_blocks(messages):
        where = f"{at}.{block['type']}.source"
        source = block.get("source")
        if not isinstance(source, dict):
            return f"{where}: Field required"
        kind = source.get("type")
        if kind == "url":
            if not isinstance(source.get("url"), str):
                return f"{where}.url.url: Field required"
            continue
        if kind == "text" and block["type"] == "document":
            if not isinstance(source.get("data"), str):
                return f"{where}.text.data: Field required"
            continue
        if kind != "base64":
            return (
                f"{where}: Input tag '{kind}' found using 'type' does not match any of "
                "the expected tags"
            )
        allowed = _IMAGE_TYPES if block["type"] == "image" else ("application/pdf",)
        if source.get("media_type") not in allowed:
            shown = " or ".join(f"'{a}'" for a in allowed)
            return f"{where}.base64.media_type: Input should be {shown}"
        if not _b64_ok(source.get("data")):
            return f"{where}.base64.data: invalid base64 data"
    return None


# ---------------------------------------------------------------- Gemini


def _inline(part: dict) -> object:
    return part.get("inlineData") if part.get("inlineData") is not None else part.get("inline_data")


def _file(part: dict) -> object:
    return part.get("fileData") if part.get("fileData") is not None else part.get("file_data")


def _mime(spec: dict) -> object:
    return spec.get("mimeType") if spec.get("mimeType") is not None else spec.get("mime_type")


def gemini_markers(content: object) -> list[str]:
    parts = content.get("parts") if isinstance(content, dict) else None
    out: list[str] = []
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict):
            continue
        spec = _inline(part) or _file(part)
        if isinstance(spec, dict):
            mime = str(_mime(spec) or "")
            kind = {"image": "image", "audio": "audio"}.get(mime.split("/")[0], "file")
            out.append(f"[{kind}: {mime.split('/')[1] if kind == 'audio' else mime}]")
    return out


def gemini_error(contents: list) -> str | None:
    for i, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        for k, part in enumerate(parts if isinstance(parts, list) else []):
            if not isinstance(part, dict):
                continue
            inline = _inline(part)
            if inline is not None:
                if not isinstance(inline, dict) or not _mime(inline):
                    return (
                        f"* GenerateContentRequest.contents[{i}].parts[{k}].inline_data"
                        ".mime_type: mime_type is not specified"
                    )
                if not _b64_ok(inline.get("data")):
                    return (
                        f"Invalid value at 'contents[{i}].parts[{k}].inline_data.data' "
                        "(TYPE_BYTES), Base64 decoding failed"
                    )
            file_data = _file(part)
            if isinstance(file_data, dict):
                uri = str(file_data.get("fileUri") or file_data.get("file_uri") or "")
                if not uri.startswith(("https://generativelanguage.googleapis.com/", "gs://")):
                    return f"Invalid or unsupported file uri: {uri}"
    return None


# ---------------------------------------------------------------- served media


async def media_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name == "pixel.png":
        return web.Response(body=PIXEL_PNG, content_type="image/png")
    if name == "doc.pdf":
        return web.Response(body=TINY_PDF, content_type="application/pdf")
    if name == "note.txt":
        return web.Response(text="a note", content_type="text/plain")
    if name == "redirect-png":
        raise web.HTTPFound("/_sim/media/pixel.png")
    if name == "redirect-metadata":  # to the cloud metadata address: must be re-checked
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")
    if name == "loop":
        raise web.HTTPFound("/_sim/media/loop")
    if name == "big.png":  # 2 MiB, for size limits
        return web.Response(body=PIXEL_PNG + b"\0" * (2 * 1024 * 1024), content_type="image/png")
    raise web.HTTPNotFound()
