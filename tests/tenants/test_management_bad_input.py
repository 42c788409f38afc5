"""Bad input on the management API (/api) and the OAuth callback: a JSON 4xx in the
API's shape ``{"error": {"type", "code", "message"}}`` naming the problem, never a 500
and never Django's HTML error pages."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from tenants_app.models import Invoice, UsageRecord

pytestmark = pytest.mark.django_db

T = "/api/tenants/acme"


@pytest.fixture
def as_owner(client_as, owner):
    return client_as(owner)


@pytest.fixture
def as_staff(client_as, staff):
    return client_as(staff)


def api_error(response, status: int) -> dict:
    """The error object of a JSON error reply with this status."""
    content = response.content.decode("utf-8", "replace")[:300]
    assert response.status_code == status, (response.status_code, content)
    assert response["Content-Type"].startswith("application/json"), content
    error = response.json()["error"]
    assert {"type", "code", "message"} <= error.keys()
    return error


def post_raw(client: Client, url: str, body: bytes, content_type: str = "application/json"):
    return client.generic("POST", url, body, content_type=content_type)


# -- bodies ---------------------------------------------------------------------------------


def test_it_refuses_json_nested_100k_deep(as_staff):
    body = b'{"name": "Deep", "allowed_providers": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    error = api_error(post_raw(as_staff, "/api/tenants/", body), 400)
    assert error["code"] == "body" and "nested deeper than 64 levels" in error["message"]


def test_it_refuses_a_lone_surrogate(as_staff):
    error = api_error(post_raw(as_staff, "/api/tenants/", b'{"name": "Bad \\ud800"}'), 400)
    assert error["code"] == "name" and "surrogate" in error["message"]
    error = api_error(post_raw(as_staff, "/api/tenants/", b'{"name": "Bad \xed\xa0\x80"}'), 400)
    assert error["code"] == "body" and "UTF-8" in error["message"]


def test_it_refuses_a_body_over_4_mib_with_json_413(as_staff, settings):
    body = b'{"name": "' + b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10) + b'"}'
    error = api_error(post_raw(as_staff, "/api/tenants/", body), 413)
    assert error["code"] == "payload_too_large" and "bytes" in error["message"]


@pytest.mark.parametrize(
    "body, content_type, status, words",
    [
        (b'{"name": ', "application/json", 400, "not valid JSON"),
        (b"name=Acme", "application/x-www-form-urlencoded", 415, "application/json"),
        (b'{"name": "Acme"}', "text/plain", 415, "application/json"),
        (b'["Acme"]', "application/json", 422, "body: Input should be a valid dictionary"),
        (b"42", "application/json", 422, "body: Input should be a valid dictionary"),
        (b"null", "application/json", 422, "body: Input should be a valid dictionary"),
    ],
    ids=["malformed", "form", "text", "array", "number", "null"],
)
def test_it_answers_a_body_it_cannot_use_with_json_naming_why(
    as_staff, body, content_type, status, words
):
    error = api_error(post_raw(as_staff, "/api/tenants/", body, content_type), status)
    assert words in error["message"]


# -- dates and periods ----------------------------------------------------------------------


@pytest.fixture
def ancient_and_recent_usage(tenant):
    for n, when in enumerate(
        [dt.datetime(1, 1, 1, 12, tzinfo=dt.UTC), dt.datetime(2025, 1, 2, 12, tzinfo=dt.UTC)]
    ):
        UsageRecord.objects.create(
            request_id=f"req-{n}",
            tenant=tenant,
            model="gpt-x",
            prompt_tokens=1,
            completion_tokens=1,
            cost_usd=Decimal("0.5"),
            status="success",
            created_at=when,
        )


def test_it_sums_usage_from_year_1_to_year_9999(as_owner, ancient_and_recent_usage):
    response = as_owner.get(f"{T}/usage?from=0001-01-01&to=9999-12-31")
    assert response.status_code == 200, response.content[:300]
    body = response.json()
    assert body["from"] == "0001-01-01" and body["to"] == "9999-12-31"
    assert body["totals"]["requests"] == 2


def test_it_exports_usage_from_year_1_to_year_9999(as_owner, ancient_and_recent_usage):
    response = as_owner.get(f"{T}/usage/csv?from=0001-01-01&to=9999-12-31")
    assert response.status_code == 200, response.content[:300]
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert len(lines) == 3  # header + both rows


def test_it_filters_the_audit_log_up_to_9999_12_31(client_as, tenant_admin):
    response = client_as(tenant_admin).get(f"{T}/audit?from=9999-12-31&to=9999-12-31")
    assert response.status_code == 200, response.content[:300]
    assert response.json()["items"] == []


def test_it_refuses_an_invoice_for_9999_12_naming_the_allowed_periods(as_owner, send, tenant):
    response = send(as_owner, "POST", f"{T}/invoices", {"period": "9999-12"})
    error = api_error(response, 400)
    this_month = f"{timezone.now():%Y-%m}"
    assert error["code"] == "period"
    assert f"from 2000-01 to {this_month}" in error["message"]
    assert not Invoice.objects.exists()
    error = api_error(as_owner.get(f"{T}/invoices/9999-12/csv"), 400)
    assert error["code"] == "period"


# -- paths and methods ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/nope", "/api/tenants/acme/nope/deeper"])
def test_it_answers_an_unknown_api_path_with_a_json_404(as_owner, path):
    error = api_error(as_owner.get(path), 404)
    assert error["type"] == "not_found_error" and path in error["message"]


@pytest.mark.parametrize(
    "method, path", [("PUT", "/api/tenants/"), ("POST", "/api/tenants/acme/usage")]
)
def test_it_answers_a_wrong_method_with_a_json_405(as_owner, method, path):
    response = as_owner.generic(method, path)
    error = api_error(response, 405)
    assert error["code"] == "method_not_allowed" and method in error["message"]
    assert "Allow" in response


# -- the OAuth callback ---------------------------------------------------------------------


def test_it_refuses_a_nul_in_an_oauth_state_with_a_400_page(client):
    response = client.get("/oauth/callback/openai/", {"state": "abc\x00def", "code": "x"})
    assert response.status_code == 400
    assert b"state" in response.content


@pytest.mark.parametrize(
    "query, param",
    [("limit=99999999999999999999", "limit"), ("offset=99999999999999999999", "offset")],
)
def test_it_bounds_the_audit_logs_paging(client_as, tenant_admin, query, param):
    error = api_error(client_as(tenant_admin).get(f"{T}/audit?{query}"), 422)
    assert error["code"] == param and "less than or equal" in error["message"]


def test_it_answers_too_many_query_fields_with_json_400(as_owner, settings):
    query = "&".join(f"f{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    error = api_error(as_owner.get(f"{T}/usage?{query}"), 400)
    assert error["code"] == "request" and "parameters exceeded" in error["message"]


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_it_refuses_a_key_expiry_outside_the_storable_range(as_owner, send, when):
    response = send(as_owner, "POST", f"{T}/keys", {"name": "k", "expires_at": when})
    error = api_error(response, 422)
    assert error["code"] == "expires_at" and "before 9999-01-01 (UTC)" in error["message"]
