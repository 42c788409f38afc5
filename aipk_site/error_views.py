"""Django's 400 and 500 handlers, in JSON for the two APIs.

The APIs answer their own errors (aipk_site/api.py, aipk_site/gateway/edge.py), but some
refusals happen before a view runs: a ``Host`` header outside ALLOWED_HOSTS is refused
by Django's CommonMiddleware with DisallowedHost, and a bug in a middleware never
reaches the API's handlers. Django then renders its HTML 400 or 500 page. API clients
read JSON only, so under /v1/ and /api/ these handlers answer in the API's own error
shape; everywhere else (the console, the admin) Django's pages stay.
"""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.views import defaults

from aipk_site.gateway.formats.anthropic_format import anthropic_error_body
from aipk_site.gateway.formats.openai_format import openai_error_body
from aipk_site.infra.errors import AipkError


def _json_error(request: HttpRequest, status: int, code: str, message: str) -> HttpResponse | None:
    """The error in the shape of the API ``request`` is for, or None outside the APIs."""
    error = AipkError(message, code=code)
    error.status = status
    if status >= 500:
        error.type = "api_error"
    path = request.path_info
    if path.startswith("/v1/"):
        anthropic = "anthropic-version" in request.headers or path.startswith("/v1/messages")
        body = (anthropic_error_body if anthropic else openai_error_body)(error)
    elif path.startswith("/api/"):
        # the management API's shape (aipk_site/api.py): no param, the code names the problem
        body = {"error": {"type": error.type, "code": error.code, "message": error.message}}
    else:
        return None
    return HttpResponse(json.dumps(body), status=status, content_type="application/json")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: a request Django refused (e.g. a Host it does not serve)."""
    response = _json_error(request, 400, "bad_request", f"the request was refused: {exception}")
    return response or defaults.bad_request(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a bug outside the APIs' own error handling (logged by Django)."""
    response = _json_error(request, 500, "internal_error", "internal error in aipk")
    return response or defaults.server_error(request)
