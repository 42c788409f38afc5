"""Per-app state shared by the route modules, under typed aiohttp AppKeys."""

from __future__ import annotations

from aiohttp import web

from providers_app.simulator.request_log import RequestLog

DELAY_S = web.AppKey("sim_delay_s", float)
REQUEST_LOG = web.AppKey("sim_request_log", RequestLog)

# The parsed body: the decoded JSON, None when there was no body, or
# INVALID_JSON when it did not parse.
JSON_KEY = web.RequestKey("sim_json", object)
INVALID_JSON = object()


def default_delay(request: web.Request) -> float:
    return request.app[DELAY_S]


def json_body(request: web.Request) -> object:
    return request.get(JSON_KEY)
