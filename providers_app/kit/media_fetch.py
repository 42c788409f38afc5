"""Fetching a client's media URL when the provider needs the bytes (Gemini inlineData,
OpenAI file parts), without letting a client aim aipk at its own network.

A URL in a request is an instruction from an untrusted caller to make aipk open a
connection, so every fetch:

- accepts only ``http``/``https`` and resolves the host first, refusing the whole
  fetch when ANY resolved address is private, loopback, link-local (169.254.x.x,
  the cloud metadata service), multicast, reserved or unspecified -- then connects
  to the address it checked (the URL is rewritten to the IP; the Host header and,
  for https, the TLS SNI and certificate check keep the name), so a DNS answer that
  changes between check and connect (DNS rebinding) cannot slip through;
- follows at most ``max_redirects`` redirects by hand, re-checking each hop;
- stops reading at ``max_bytes`` and after ``timeout`` seconds in total;
- checks the Content-Type against the kinds the caller allows.

``FetchPolicy.allow_private`` relaxes the address guard; it exists for tests
against the loopback simulator and is off unless the deployment sets
``MEDIA_FETCH_ALLOW_PRIVATE``. Framework-free: the Django app calls
:func:`configure` at start-up with the settings' values.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

__all__ = [
    "FetchPolicy",
    "FetchedMedia",
    "MediaFetchError",
    "check_address",
    "configure",
    "fetch_media",
    "policy",
]


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    max_bytes: int = 10 * 1024 * 1024
    timeout: float = 10.0
    max_redirects: int = 3
    allow_private: bool = False
    # networks exempt from the address guard (CIDR strings), narrower than allow_private
    allowed_networks: tuple[str, ...] = ()
    # all the bytes one request may make aipk fetch (kit/media.py inline_urls)
    max_request_bytes: int = 20 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FetchedMedia:
    data: str  # base64
    media_type: str
    size: int


class MediaFetchError(Exception):
    """The URL could not be fetched safely; the message says why (no secrets in it)."""


_policy = FetchPolicy()


def configure(new: FetchPolicy) -> None:
    global _policy
    _policy = new


def policy() -> FetchPolicy:
    return _policy


def check_address(
    address: str, *, allow_private: bool = False, allowed_networks: tuple[str, ...] = ()
) -> None:
    """Refuse an IP that is not a public unicast address (unless relaxed)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if allow_private or any(ip in ipaddress.ip_network(n) for n in allowed_networks):
        return
    if (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    ):
        raise MediaFetchError(f"refused: {address} is not a public address")


async def _resolve(host: str, port: int, rules: FetchPolicy) -> str:
    """The first address of ``host``, after checking every address it resolves to."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        check_address(
            str(literal),
            allow_private=rules.allow_private,
            allowed_networks=rules.allowed_networks,
        )
        return str(literal)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise MediaFetchError(f"cannot resolve {host}") from exc
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise MediaFetchError(f"cannot resolve {host}")
    for address in addresses:
        check_address(
            address, allow_private=rules.allow_private, allowed_networks=rules.allowed_networks
        )
    return addresses[0]


def _type_allowed(content_type: str, allowed: tuple[str, ...]) -> bool:
    return any(
        content_type == a or (a.endswith("/") and content_type.startswith(a)) for a in allowed
    )


async def fetch_media(
    url: str, allowed_types: tuple[str, ...], *, fetch_policy: FetchPolicy | None = None
) -> FetchedMedia:
    """GET ``url`` under the policy; ``allowed_types`` are exact media types or
    prefixes ending in ``/`` (``"image/"``). Raises :class:`MediaFetchError`."""
    rules = fetch_policy or _policy
    try:
        async with asyncio.timeout(rules.timeout):
            return await _fetch(url, allowed_types, rules)
    except TimeoutError:
        raise MediaFetchError(f"timed out after {rules.timeout:g} s") from None


async def _fetch(url: str, allowed: tuple[str, ...], rules: FetchPolicy) -> FetchedMedia:
    # no proxies from the environment: the connection must go to the checked address
    async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as client:
        for _hop in range(rules.max_redirects + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise MediaFetchError("only http and https URLs can be fetched")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            address = await _resolve(parts.hostname, port, rules)
            host_for_url = f"[{address}]" if ":" in address else address
            netloc = f"{host_for_url}:{parts.port}" if parts.port else host_for_url
            pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
            headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "Accept": ", ".join(allowed)}
            extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
            request = client.build_request("GET", pinned, headers=headers, extensions=extensions)
            try:
                response = await client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise MediaFetchError(f"could not fetch: {type(exc).__name__}") from None
            try:
                if response.status_code in (301, 302, 303, 307, 308):
                    location = response.headers.get("location")
                    if not location:
                        raise MediaFetchError("redirect without a Location")
                    url = urljoin(url, location)
                    continue
                if response.status_code != 200:
                    raise MediaFetchError(f"answered HTTP {response.status_code}")
                content_type = (
                    response.headers.get("content-type", "").split(";")[0].strip().lower()
                )
                if not _type_allowed(content_type, allowed):
                    raise MediaFetchError(
                        f"content type {content_type or 'none'!r} is not one of {list(allowed)}"
                    )
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > rules.max_bytes:
                    raise MediaFetchError(f"is larger than {rules.max_bytes} bytes")
                body = bytearray()
                async for piece in response.aiter_bytes():
                    body.extend(piece)
                    if len(body) > rules.max_bytes:
                        raise MediaFetchError(f"is larger than {rules.max_bytes} bytes")
                return FetchedMedia(
                    data=base64.b64encode(bytes(body)).decode("ascii"),
                    media_type=content_type,
                    size=len(body),
                )
            finally:
                await response.aclose()
        raise MediaFetchError(f"more than {rules.max_redirects} redirects")
