"""RequestIdMiddleware: one id per HTTP request, in the log context and the response.

An incoming ``x-request-id`` is kept when it is sane (1-128 characters of
letters, digits and ``._:-``), so a reverse proxy's id follows the request
through aipk; anything else is replaced by 32 fresh random hex digits. The response
echoes the id in ``x-request-id`` unless the view set one itself (the gateway
answers with its completion id and binds that id to the log context too).

Async-capable without a thread hop: its hooks do no I/O, so under ASGI they
run on the event loop. It also offers ``process_request``/``process_response``
so a handler that calls those hooks directly (aipk_site/gateway/handler.py's
``ON_LOOP_MIDDLEWARE``) can use it. The id is never reset at the end: Django
serves each ASGI request in its own task with its own context, and a sync
(WSGI / test client) request binds a new id when it starts.
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from aipk_site.infra.log_context import bind_request_id

HEADER = "x-request-id"
_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def random_hex() -> str:
    """32 random hex digits: a request id. Not uuid4 (a system call for 16 random bytes
    on every request): ids need to be unique, not unpredictable, and the process's
    generator is seeded from the system's randomness (again in a forked child)."""
    return f"{random.getrandbits(128):032x}"


def request_id_from(value: str | None) -> str:
    """The caller's id if it is safe to log and echo, else a new one."""
    if value and _SANE.match(value):
        return value
    return random_hex()


class RequestIdMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.async_mode:
            return self.__acall__(request)
        self.process_request(request)
        return self.process_response(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        self.process_request(request)
        return self.process_response(request, await self.get_response(request))

    def process_request(self, request: HttpRequest) -> None:
        request.request_id = request_id_from(request.headers.get(HEADER))
        bind_request_id(request.request_id)

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        request_id = getattr(request, "request_id", None)
        if request_id and not response.has_header(HEADER):
            response[HEADER] = request_id
        return response
