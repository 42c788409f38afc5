"""ASGI entry point: /v1/ goes to the gateway's lean edge, other HTTP to Django,
websockets to Channels.

Served by uvicorn in production (`make serve`, `manage.py serve`), by daphne in
development (`make run`, or `manage.py runserver` since daphne is first in
INSTALLED_APPS), or any ASGI server: the lifespan protocol and SIGTERM are handled by
aipk_site/gateway/shutdown.py.
"""

import gc
import os
from collections.abc import Awaitable, Callable
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aipk_site.settings")

# Initialise Django (apps, settings) before importing anything that touches models.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from aipk_site.gateway.edge import GatewayEdge  # noqa: E402
from aipk_site.gateway.handler import GatewayASGIHandler, gateway_path  # noqa: E402
from aipk_site.gateway.shutdown import ShutdownMiddleware  # noqa: E402
from aipk_site.infra.tracing import tracing_setup  # noqa: E402
from aipk_site.routing import origin_validator, websocket_urlpatterns  # noqa: E402

# /v1/ (the gateway): its hot operations are served without Django's request handler
# (aipk_site/gateway/edge.py); the rest of /v1/ (docs, OpenAPI, unknown paths) goes to
# Django with a lighter middleware stack (aipk_site/gateway/handler.py).
gateway_asgi_app = GatewayEdge(fallback=GatewayASGIHandler())


async def http_app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    app = gateway_asgi_app if gateway_path(scope) else django_asgi_app
    await app(scope, receive, send)


# ShutdownMiddleware: SIGTERM (or lifespan shutdown) drains requests in flight and
# flushes usage rows before the server exits, in daphne and in lifespan servers alike.
application = ShutdownMiddleware(
    ProtocolTypeRouter(
        {
            "http": http_app,
            # Origin is checked when a browser sends one; see routing.BrowserOriginValidator.
            "websocket": origin_validator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        }
    )
)

# OpenTelemetry traces when the OTEL_* environment asks for them (docs/MONITORING.md):
# once per server process, each worker of `make serve` included (each loads this module).
tracing_setup()

# The cyclic garbage collector's full passes walk every object in the process, and
# Django, the apps and their imports are several hundred thousand objects that live as
# long as the process: freezing them keeps them out of every later pass, and a larger
# first-generation threshold makes passes rarer under the gateway's allocation rate
# (~15 % of a /v1 request's CPU, docs/BENCHMARKS.md "Data plane"). Reference counting
# still frees everything that is not a cycle at once.
gc.collect()
gc.freeze()
gc.set_threshold(20_000, 20, 50)
