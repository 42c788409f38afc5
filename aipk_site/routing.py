"""Websocket URL patterns, mounted by aipk_site.asgi.

Empty until the chat consumer (`/ws/chat/`) lands; every websocket path is
rejected until then.
"""

websocket_urlpatterns: list = []
