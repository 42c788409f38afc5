"""Websocket URL patterns and the origin check, mounted by aipk_site.asgi."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.urls import path
from django.utils.http import is_same_domain

from aipk_site.gateway.consumers import ChatConsumer

websocket_urlpatterns = [
    path("ws/chat/", ChatConsumer.as_asgi()),
]

DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]  # (scheme, host, port), lower case, port made explicit


def _parse_origin(value: str) -> Origin | None:
    try:
        parts = urlsplit(value.strip().lower())
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port that is no number, or out of range
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or port is None:
        return None
    return parts.scheme, parts.hostname, port


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _secure(scope: dict[str, Any]) -> bool:
    """Whether the socket came over TLS: wss, or https as a trusted proxy says (like Django's
    ``request.is_secure()`` with SECURE_PROXY_SSL_HEADER)."""
    if scope.get("scheme") == "wss":
        return True
    proxy_header = settings.SECURE_PROXY_SSL_HEADER
    if not proxy_header:
        return False
    meta_name, secure_value = proxy_header
    name = meta_name.removeprefix("HTTP_").replace("_", "-").lower().encode()
    value = _header(scope, name)
    return value is not None and value.split(",", 1)[0].strip() == secure_value


def _own_origin(scope: dict[str, Any]) -> Origin | None:
    """The origin this socket was opened on, if its Host is one of ALLOWED_HOSTS."""
    host = _header(scope, b"host")
    if not host:
        return None
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    return _parse_origin(f"{'https' if _secure(scope) else 'http'}://{host}")


def _trusted(origin: Origin, trusted: str) -> bool:
    """An entry of CSRF_TRUSTED_ORIGINS: same scheme and port, same host or, for
    "https://*.example.com", a subdomain -- as Django's CSRF check reads them."""
    wildcard = "://*." in trusted
    allowed = _parse_origin(trusted.replace("://*.", "://", 1) if wildcard else trusted)
    if allowed is None or (origin[0], origin[2]) != (allowed[0], allowed[2]):
        return False
    if wildcard:
        return is_same_domain(origin[1], "." + allowed[1])
    return origin[1] == allowed[1]


def origin_allowed(scope: dict[str, Any], origin: str) -> bool:
    """Whether a browser page at ``origin`` may open this socket: exactly the socket's own
    scheme, host and port (the host one of ALLOWED_HOSTS), or one of CSRF_TRUSTED_ORIGINS."""
    parsed = _parse_origin(origin)
    if parsed is None:  # "null" (sandboxed pages, file:), or not an http(s) origin
        return False
    if parsed == _own_origin(scope):
        return True
    return any(_trusted(parsed, trusted) for trusted in settings.CSRF_TRUSTED_ORIGINS)


class BrowserOriginValidator:
    """Refuses cross-site browser pages (which would ride the console's session cookie),
    but lets through clients that send no Origin at all.

    Browsers always send Origin on a websocket handshake, so a missing one means a
    program (aiohttp, websockets, an SDK) that authenticates with a virtual key and
    has no ambient cookie to abuse; Channels' AllowedHostsOriginValidator refuses
    those too, which would shut every app out of /ws/chat/. An Origin must match
    exactly, scheme, host and port: a page on another port or over plain http of an
    allowed host is another origin to the browser, and so it is here (as in Django's
    own CSRF origin check, whose CSRF_TRUSTED_ORIGINS it shares)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket":
            origin = _header(scope, b"origin")
            if origin is not None and not origin_allowed(scope, origin):
                return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


def origin_validator(application: Any) -> BrowserOriginValidator:
    """The websocket origin check around ``application`` (aipk_site.asgi)."""
    return BrowserOriginValidator(application)
