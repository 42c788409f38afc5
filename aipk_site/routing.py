"""Websocket URL patterns and the origin check, mounted by aipk_site.asgi."""

from channels.security.websocket import OriginValidator
from django.conf import settings
from django.urls import path

from tenants_app.consumers import ChatConsumer

websocket_urlpatterns = [
    path("ws/chat/", ChatConsumer.as_asgi()),
]


class BrowserOriginValidator(OriginValidator):
    """Refuses cross-site browser pages (which would ride the console's session cookie),
    but lets through clients that send no Origin at all.

    Browsers always send Origin on a websocket handshake, so a missing one means a
    program (aiohttp, websockets, an SDK) that authenticates with a virtual key and
    has no ambient cookie to abuse. Channels' AllowedHostsOriginValidator refuses
    those too, which would shut every app out of /ws/chat/.
    """

    def valid_origin(self, parsed_origin) -> bool:
        return parsed_origin is None or super().valid_origin(parsed_origin)


def origin_validator(application):
    """ALLOWED_HOSTS as the allowed origins, like AllowedHostsOriginValidator."""
    return BrowserOriginValidator(application, settings.ALLOWED_HOSTS)
