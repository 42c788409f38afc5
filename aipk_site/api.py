"""The one NinjaAPI instance and the error shape every API error takes:
``{"error": {"type", "code", "message"}}`` with the right HTTP status."""

from __future__ import annotations

from django.db import DataError
from django.http import Http404
from django.http.multipartparser import MultiPartParserError
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, AuthorizationError, HttpError, ValidationError

from providers_app.services.credentials import CredentialError
from providers_app.services.provider_settings import ProviderSettingsError
from tenants_app.services.errors import GatewayError

api = NinjaAPI(title="aipk", version="1")


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


@api.exception_handler(ProviderSettingsError)
def on_settings_error(request, exc: ProviderSettingsError):
    field = next(iter(exc.errors), "settings")
    return error_response(request, 400, "invalid_request_error", field, str(exc))


@api.exception_handler(CredentialError)
def on_credential_error(request, exc: CredentialError):
    return error_response(request, 400, "invalid_request_error", exc.field, str(exc))


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


@api.exception_handler(GatewayError)
def on_service_error(request, exc: GatewayError):
    # services name the offending field in ``param``; it is the error's code, as for 422s
    return error_response(request, exc.status, exc.type, exc.param or exc.code, exc.message)


# ninja's default messages, raised bare by the providers API's staff check and by
# ninja itself when no authenticator accepts the request
_NINJA_DEFAULT_MESSAGES = ("Unauthorized", "Forbidden")


@api.exception_handler(AuthenticationError)
def on_unauthenticated(request, exc):
    message = "log in first" if exc.message in _NINJA_DEFAULT_MESSAGES else exc.message
    return error_response(request, 401, "authentication_error", "unauthenticated", message)


@api.exception_handler(AuthorizationError)
def on_forbidden(request, exc):
    message = "staff only" if exc.message in _NINJA_DEFAULT_MESSAGES else exc.message
    return error_response(request, 403, "permission_error", "forbidden", message)


@api.exception_handler(HttpError)
def on_http_error(request, exc: HttpError):
    return error_response(
        request, exc.status_code, "invalid_request_error", "http_error", exc.message
    )
