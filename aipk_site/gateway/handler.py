"""The ASGI handler for the gateway's /v1/ paths: Django's own, with a lighter middleware stack.

Every Django middleware written as a ``MiddlewareMixin`` runs its
``process_request`` and ``process_response`` through ``sync_to_async`` under
ASGI: two thread hops per middleware per request, all on a thread created for
that request. With the site's eight middlewares that was the largest share of
aipk's CPU per gateway request (docs/BENCHMARKS.md, "Gateway overhead").

/v1/ is called with an API key, never with a cookie: sessions, CSRF, the
logged-in user, messages and htmx have nothing to do there. What the site's
middleware does to a /v1/ response -- the security headers, X-Frame-Options,
Content-Length, the slash redirect -- comes from middlewares whose hooks only
read settings and look at the request and response, so they are called here
directly on the event loop, in the order MIDDLEWARE lists them.

Django also opens a ``ThreadSensitiveContext`` per request, so the request's
sync work (the request_started/finished signal receivers, ``response.close``)
runs on a thread created for that request and joined at its end. The gateway's
views are async and keep their sync work to single ``sync_to_async`` calls that
each finish what they start (no transaction spans two calls), so here that work
shares the process's one sync thread instead: no thread start and join per
request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.module_loading import import_string

# Middlewares whose hooks do no I/O and touch no database, session or cookie, so
# calling them on the event loop cannot block it.
ON_LOOP_MIDDLEWARE = (
    "aipk_site.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)


Handler = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


def _on_loop(middleware: Any, get_response: Handler) -> Handler:
    process_request = getattr(middleware, "process_request", None)
    process_response = getattr(middleware, "process_response", None)

    async def run(request: HttpRequest) -> HttpResponseBase:
        response = process_request(request) if process_request else None
        if response is None:
            response = await get_response(request)
        if process_response:
            response = process_response(request, response)
        response_out: HttpResponseBase = response
        return response_out

    return run


class GatewayASGIHandler(ASGIHandler):  # type: ignore[misc]  # Django ships no types
    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            raise ValueError(f"the gateway handler serves HTTP only, not {scope['type']}")
        await self.handle(scope, receive, send)

    def load_middleware(self, is_async: bool = False) -> None:
        assert is_async, "the gateway handler serves ASGI only"
        self._view_middleware: list[Callable[..., Any]] = []
        self._template_response_middleware: list[Callable[..., Any]] = []
        self._exception_middleware: list[Callable[..., Any]] = []
        handler = convert_exception_to_response(self._get_response_async)
        for path in reversed([p for p in settings.MIDDLEWARE if p in ON_LOOP_MIDDLEWARE]):
            middleware = import_string(path)(handler)
            handler = convert_exception_to_response(_on_loop(middleware, handler))
        self._middleware_chain = handler


def gateway_path(scope: dict[str, Any]) -> bool:
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path.startswith("/v1/")
