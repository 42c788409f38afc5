"""JSON for the requests a NinjaAPI has no operation for: unknown paths and wrong methods.

Without this, a path under /api/ or /v1/ that matches no operation falls through to
Django's HTML 404 page, and a known path called with the wrong method gets ninja's
``HttpResponseNotAllowed`` (text/html, "Method not allowed"). API clients (the openai
and anthropic SDKs, scripts) read JSON errors only, so both APIs of the project
(the management API in aipk_site/api.py, the gateway in aipk_site/gateway/edge.py) answer
these in their own error shape instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import URLPattern, URLResolver, re_path
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI

__all__ = ["JSONFallbackAPI"]


class JSONFallbackAPI(NinjaAPI):
    """A NinjaAPI whose 404 for an unknown path and 405 for a wrong method are JSON.

    Subclasses say how an error looks in ``fallback_error``.
    """

    def fallback_error(
        self, request: HttpRequest, status: int, code: str, message: str
    ) -> HttpResponse:
        raise NotImplementedError

    def _get_urls(self) -> list[URLResolver | URLPattern]:
        urls: list[URLResolver | URLPattern] = []
        for url in super()._get_urls():
            if isinstance(url, URLPattern):
                url = URLPattern(
                    url.pattern, self._json_not_allowed(url.callback), url.default_args, url.name
                )
            urls.append(url)
        # last: only what no operation matched reaches it
        # csrf_exempt: a POST to an unknown path deserves the 404, not the CSRF page
        unknown = csrf_exempt(functools.partial(JSONFallbackAPI._unknown_path, self))
        urls.append(re_path(r"^.*$", unknown, name="unknown-path"))
        return urls

    def _unknown_path(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self.fallback_error(
            request, 404, "unknown_path", f"no such path: {request.method} {request.path}"
        )

    def _json_not_allowed(self, view: Callable[..., Any]) -> Callable[..., Any]:
        """``view``, with ninja's HTML 405 turned into a JSON error keeping its Allow header."""

        def convert(request: HttpRequest, response: Any) -> Any:
            if not isinstance(response, HttpResponseNotAllowed):
                return response
            allowed = response["Allow"]
            converted = self.fallback_error(
                request,
                405,
                "method_not_allowed",
                f"{request.method} is not allowed on {request.path}; use {allowed}",
            )
            converted["Allow"] = allowed
            return converted

        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                return convert(request, await view(request, *args, **kwargs))

            return markcoroutinefunction(async_view)

        @functools.wraps(view)
        def sync_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            return convert(request, view(request, *args, **kwargs))

        return sync_view
