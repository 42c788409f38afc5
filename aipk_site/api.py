"""The one NinjaAPI instance of the management API: every app's routers mounted with one
authentication (a console session or an admin token, tenants_app.auth), and the error
shape every API error takes: ``{"error": {"type", "code", "message"}}`` with the right
HTTP status. The error family (AipkError: refusals of the auth helpers, operations and
services alike) is rendered by one handler; the others turn what Django, ninja and the
database raise into the same shape."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as ModelValidationError
from django.db import DataError
from django.http import Http404, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from ninja import Router, Swagger
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.operation import Operation
from ninja.parser import Parser

from aipk_site.gateway import live_api
from aipk_site.gateway.formats.common import load_json
from aipk_site.infra.errors import AipkError, PayloadTooLarge
from aipk_site.infra.ninja_fallbacks import JSONFallbackAPI
from providers_app.api import credentials as provider_credentials
from providers_app.api import models as provider_models
from providers_app.api import providers
from tenants_app.api import alerts as alert_channels
from tenants_app.api import audit, invoices, keys, members, pricing, routes, tenants, tokens, usage
from tenants_app.api import credentials as tenant_credentials
from tenants_app.api import requests as request_log  # hB: the request log
from tenants_app.auth import management_auth

logger = logging.getLogger(__name__)


class UnsupportedMediaType(AipkError):
    status = 415
    code = "unsupported_media_type"


class JSONBodyParser(Parser):
    """Bodies must be JSON, sent as such: the gateway's own reader (strict UTF-8, nesting
    bounded, no lone surrogates), so a body that is JSON in name only is a 4xx naming
    the problem rather than ninja's "Cannot parse request body" or a RecursionError."""

    def parse_body(self, request: HttpRequest) -> Any:
        content_type = request.content_type or ""
        if content_type != "application/json" and not (
            content_type.startswith("application/") and content_type.endswith("+json")
        ):
            raise UnsupportedMediaType(
                "the body must be JSON sent with Content-Type: application/json, "
                f"not {content_type or 'no content type'}"
            )
        return load_json(request.body)


# Operation ids are what client generators name their methods after, so they keep the
# names they were published with: those of the two modules that held every operation
# before the API became one router per resource.
PUBLISHED_OPERATION_ID_PREFIXES = (
    ("tenants_app.api.", "tenants_app_management_api"),
    (live_api.__name__, "tenants_app_management_api"),
    ("providers_app.api.", "providers_app_api"),
)


class ManagementAPI(JSONFallbackAPI):
    """Unknown paths and wrong methods answer in the API's error shape too."""

    def fallback_error(
        self, request: HttpRequest, status: int, code: str, message: str
    ) -> HttpResponse:
        error_type = "not_found_error" if status == 404 else "invalid_request_error"
        return error_response(request, status, error_type, code, message)

    def get_openapi_operation_id(self, operation: Operation) -> str:
        module = operation.view_func.__module__
        for package, published in PUBLISHED_OPERATION_ID_PREFIXES:
            if module.startswith(package):
                return f"{published}_{operation.view_func.__name__}"
        return super().get_openapi_operation_id(operation)


# Swagger UI from django-ninja's bundled static files ("ninja" in INSTALLED_APPS); its
# default validator badge would fetch validator.swagger.io: /api/docs asks nothing outside
api = ManagementAPI(
    title="aipk",
    version="1",
    parser=JSONBodyParser(),
    docs=Swagger(settings={"validatorUrl": None}),
)

# (prefix, router): one router per resource, all behind the same authentication
ROUTERS: tuple[tuple[str, Router], ...] = (
    ("/providers", providers.router),
    ("/providers", provider_credentials.router),
    ("/tenants", tenants.router),
    ("/tenants", members.router),
    ("/tenants", keys.router),
    ("", routes.router),  # /tenants/{slug}/routes and /routes
    ("/tenants", usage.router),
    ("/tenants", live_api.router),  # /tenants/{slug}/usage/now: the gateway's counters
    ("/tenants", request_log.router),  # hB: /tenants/{slug}/requests
    ("/tenants", invoices.router),
    ("/tenants", audit.router),
    ("/pricing", pricing.router),
    ("/admin-tokens", tokens.router),
    # model search by capability (docs/API.md "Models") and a tenant's own keys
    ("/models", provider_models.router),
    ("/tenants", tenant_credentials.router),  # /tenants/{slug}/credentials
    # alert channels: /tenants/{slug}/alert-channels and the organisation's /alert-channels
    ("", alert_channels.router),
)
for prefix, router in ROUTERS:
    api.add_router(prefix, router, auth=management_auth)


def error_response(request, status: int, error_type: str, code: str, message: str):
    return api.create_response(
        request, {"error": {"type": error_type, "code": code, "message": message}}, status=status
    )


@api.exception_handler(ValidationError)
def on_validation_error(request, exc: ValidationError):
    first = exc.errors[0] if exc.errors else {}
    # loc is (source, param name, field...): keep only the field the client sent
    wrappers = ("body", "payload", "query", "path")
    field = ".".join(str(p) for p in first.get("loc", ()) if p not in wrappers) or "body"
    return error_response(
        request, 422, "invalid_request_error", field, f"{field}: {first.get('msg', 'invalid')}"
    )


@api.exception_handler(Http404)
def on_not_found(request, exc):
    return error_response(request, 404, "not_found_error", "not_found", str(exc) or "not found")


@api.exception_handler(MultiPartParserError)
def on_unparsable_form(request, exc: MultiPartParserError):
    # a form body Django cannot parse (e.g. multipart without a boundary), met when the
    # session auth's CSRF check reads request.POST: Django's own answer is an HTML page
    return error_response(
        request, 400, "invalid_request_error", "body", f"the request body cannot be parsed: {exc}"
    )


@api.exception_handler(DataError)
def on_data_error(request, exc: DataError):
    # a value the database refuses (e.g. NUL in a path or query on PostgreSQL) is the
    # client's to fix: a 400 naming it rather than a 500
    return error_response(
        request, 400, "invalid_request_error", "invalid_value", f"a value was refused: {exc}"
    )


@api.exception_handler(AipkError)
def on_service_error(request, exc: AipkError):
    # the whole family: auth helpers, operations and services (credential and provider
    # settings errors included) name the offending field in ``param``; it is the
    # error's code, as for 422s
    return error_response(request, exc.status, exc.type, exc.param or exc.code, exc.message)


@api.exception_handler(AuthenticationError)
def on_unauthenticated(request, exc):
    # ninja's own, raised when no authenticator accepts the request (a refused admin
    # token is the family's AuthenticationFailed instead)
    message = "log in first" if exc.message == "Unauthorized" else exc.message
    return error_response(request, 401, "authentication_error", "unauthenticated", message)


@api.exception_handler(HttpError)
def on_http_error(request, exc: HttpError):
    if isinstance(exc.__cause__, AipkError):
        # ninja wraps whatever the body parser raises in a bare "Cannot parse request
        # body"; the parser's own error says what is wrong
        return on_service_error(request, exc.__cause__)
    return error_response(
        request, exc.status_code, "invalid_request_error", "http_error", exc.message
    )


@api.exception_handler(RequestDataTooBig)
def on_body_too_big(request, exc: RequestDataTooBig):
    # Django's own answer is its HTML 400 page
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return on_service_error(
        request, PayloadTooLarge(f"the request body is larger than {limit} bytes")
    )


@api.exception_handler(SuspiciousOperation)
def on_suspicious_request(request, exc: SuspiciousOperation):
    # Django's request limits (too many query or form fields, files): its own answer is
    # an HTML 400 page
    return error_response(
        request, 400, "invalid_request_error", "request", f"the request was refused: {exc}"
    )


@api.exception_handler(ModelValidationError)
def on_model_validation_error(request, exc: ModelValidationError):
    # a model's own validation (full_clean in a service) is the client's to fix too
    field = next(iter(getattr(exc, "error_dict", None) or {}), "body")
    message = "; ".join(exc.messages) or "invalid"
    return error_response(request, 400, "invalid_request_error", field, f"{field}: {message}")


@api.exception_handler(Exception)
def on_unexpected(request, exc: Exception):
    """A bug answers with a JSON 500 rather than Django's HTML page; logged with its
    traceback."""
    logger.error("api: unexpected %s on %s", type(exc).__name__, request.path, exc_info=exc)
    return error_response(
        request, 500, "api_error", "internal_error", f"internal error ({type(exc).__name__})"
    )
