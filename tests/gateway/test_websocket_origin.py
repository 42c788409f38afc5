"""The websocket origin check, over the real server's /ws/chat/: a browser page may open
the socket only from exactly the socket's own scheme, host and port (the host one of
ALLOWED_HOSTS) or from one of CSRF_TRUSTED_ORIGINS; programs sending no Origin pass."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import aiohttp
import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def ws_url(gateway_server) -> str:
    return gateway_server.url.replace("http://", "ws://", 1) + "/ws/chat/"


def handshake(gateway_server, headers: dict[str, str]) -> int:
    """The handshake's status: 101 when the socket opened, else the refusal's status."""

    async def main() -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(ws_url(gateway_server), headers=headers):
                    return 101
            except aiohttp.WSServerHandshakeError as error:
                return error.status

    return asyncio.run(main())


def test_it_lets_a_page_on_the_sockets_own_origin_in(world, gateway_server):
    assert handshake(gateway_server, {"origin": gateway_server.url}) == 101


def test_it_lets_a_program_without_an_origin_in(world, gateway_server):
    assert handshake(gateway_server, {"authorization": f"Bearer {world.secret}"}) == 101


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:1",  # an allowed host, another port
        "https://127.0.0.1:{port}",  # the same host and port over another scheme
        "http://127.0.0.1",  # the default port is another port
        "http://localhost:{port}",  # another allowed host is another origin
        "http://evil.example",
        "null",  # sandboxed pages and file: URLs
        "ftp://127.0.0.1:{port}",
    ],
)
def test_it_refuses_any_other_port_scheme_or_host(world, gateway_server, origin):
    port = urlsplit(gateway_server.url).port

    status = handshake(gateway_server, {"origin": origin.format(port=port)})

    assert status == 403


def test_it_refuses_a_host_header_outside_allowed_hosts(world, gateway_server):
    port = urlsplit(gateway_server.url).port
    headers = {"host": f"evil.example:{port}", "origin": f"http://evil.example:{port}"}

    assert handshake(gateway_server, headers) == 403


def test_it_lets_csrf_trusted_origins_in_exactly(world, gateway_server, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://console.example.com", "https://*.apps.example.com"]

    assert handshake(gateway_server, {"origin": "https://console.example.com"}) == 101
    assert handshake(gateway_server, {"origin": "https://console.example.com:443"}) == 101
    assert handshake(gateway_server, {"origin": "https://team.apps.example.com"}) == 101
    assert handshake(gateway_server, {"origin": "http://console.example.com"}) == 403
    assert handshake(gateway_server, {"origin": "https://console.example.com:8443"}) == 403
    assert handshake(gateway_server, {"origin": "https://evil-console.example.com"}) == 403


def test_it_takes_https_from_a_trusted_proxy(world, gateway_server, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    port = urlsplit(gateway_server.url).port
    https_page = f"https://127.0.0.1:{port}"

    assert handshake(gateway_server, {"origin": https_page, "x-forwarded-proto": "https"}) == 101
    assert handshake(gateway_server, {"origin": https_page}) == 403
    assert handshake(gateway_server, {"origin": gateway_server.url}) == 101
