"""daphne's Server with aipk's websocket message limit and a proper close beyond it.

Two things of daphne's own defaults broke docs/WEBSOCKET.md's promise that an
oversized message gets ``chat.error payload_too_large``:

- daphne stops reading a websocket message at 1 MiB, below the chat's own limit
  (``GATEWAY_MAX_BODY_BYTES``, 4 MiB by default), so a legal 2 MiB request never
  reached the consumer. Here the server takes up to ``WS_MAX_MESSAGE_BYTES`` (the
  chat's limit + 1 MiB by default, so a socket buffers at most that), and the
  consumer answers everything between the two limits with ``payload_too_large``
  while keeping the socket.
- beyond its limit daphne's websocket library (autobahn) drops the TCP connection
  (``failByDrop``), which clients see as an abnormal closure (1006) with no reason.
  Here it sends a close frame instead: 1009 "message too big", with the limit in the
  reason, as RFC 6455 intends.

``manage.py run_embedded`` (``make run``) and the test suite's ``gateway_server`` serve
with this class. ``daphne aipk_site.asgi:application`` takes the limit as
``--websocket-max-message-size`` / ``--websocket-max-frame-size`` but cannot change
autobahn's drop (docs/WEBSOCKET.md, "Limits of this version").
"""

from __future__ import annotations

from typing import Any

from daphne.server import Server
from django.conf import settings


class DaphneServer(Server):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # daphne's runserver passes its own values (read from the DAPHNE_WEBSOCKET_*
        # settings, which follow WS_MAX_MESSAGE_BYTES); callers that pass none get ours
        if kwargs.get("websocket_max_message_size") is None:
            kwargs["websocket_max_message_size"] = settings.WS_MAX_MESSAGE_BYTES
        if kwargs.get("websocket_max_frame_size") is None:
            kwargs["websocket_max_frame_size"] = settings.WS_MAX_MESSAGE_BYTES
        super().__init__(*args, **kwargs)

    # Server.run() creates its websocket factory and sets daphne's options on it in one
    # go; taking it through a property is the one place to add an option of our own.
    @property
    def ws_factory(self) -> Any:
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory: Any) -> None:
        # a close frame (1009) rather than a dropped connection on a protocol error
        factory.setProtocolOptions(failByDrop=False)
        self._ws_factory = factory
