"""Schemathesis over both OpenAPI schemas, against the live ``gateway_server``.

Every operation of /api/openapi.json (management API) and /v1/openapi.json (gateway)
becomes one pytest item (``test_management_api[POST /api/tenants/]`` …), each with a
fresh seeded world: the ``world`` tenant ``acme`` with its providers on the simulator,
a staff user with an admin token and a console session, a member, a tenant route and a
global route, an invoice, a price, a spare virtual key, admin token and provider API key.
The objects a path names have fixed ids (``FIXED_ID``), so the schemas get explicit
examples naming them: schemathesis runs those first, so every operation — DELETE a
tenant, revoke a key — is exercised once with inputs that exist and a valid body before
the coverage and fuzzing phases send boundary, random and invalid ones (mostly 404/422).
The gateway's examples call a real model on the simulator.

What must hold: no response is a 5xx, a response's content type is the documented one
and a documented (2xx) response matches its schema. Undocumented 4xx statuses are not
failures: the schemas document success responses only. ``test_*_without_auth`` sends a
few cases per operation with no credentials and wants 401 (or, for a write to the
management API, the 403 that ninja's session auth gives when the CSRF check fails).

Determinism: a fixed seed, derandomized generation and no example database, so a CI run
sends exactly what a local run sends. Budget: MAX_EXAMPLES = 25 fuzzed cases per
operation (plus the explicit example and the coverage phase): the whole file takes about
70 s on the 2-core machine with SQLite, 80 s with PostgreSQL and Redis. Each test is
``transaction=True``: the database is flushed after every operation, so mutations do not
leak between items.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import zlib
from decimal import Decimal

import pytest
import schemathesis
from django.test import Client
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

pytestmark = pytest.mark.django_db(transaction=True)

# AIPK_FUZZ_SEED / AIPK_FUZZ_EXAMPLES: a deeper or different local run; CI uses the defaults.
SEED = int(os.environ.get("AIPK_FUZZ_SEED", "20250101"))
MAX_EXAMPLES = int(os.environ.get("AIPK_FUZZ_EXAMPLES", "25"))
NO_AUTH_EXAMPLES = 2
REQUEST_TIMEOUT = 30  # seconds; a hang fails the case rather than the whole run

FIXED_ID = 4242
MEMBER = "fuzz-member"
NEWCOMER = "fuzz-newcomer"  # a user in no tenant yet
ALIAS = "fast"
PERIOD = "2025-01"
CSRF_TOKEN = "fuzzcsrf" * 4  # 32 characters, as Django's CSRF secret
MODEL_OPENAI = "openai/gpt-4o-mini"
MODEL_ANTHROPIC = "anthropic/claude-3-5-haiku-20241022"

CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]

PATH_EXAMPLES = {
    "slug": "acme",
    "username": MEMBER,
    "key_id": FIXED_ID,
    "alias": ALIAS,
    "period": PERIOD,
    "pricing_id": FIXED_ID,
    "token_id": FIXED_ID,
    "name": "openai",
    "channel_id": FIXED_ID,  # alerts (slice hD)
    "request_id": "fuzz-request-1",  # hB: a request log entry with a captured body
}

_ROUTE = {"alias": "fuzzed", "candidates": [{"provider": "openai", "model": "gpt-4o-mini"}]}

BODY_EXAMPLES = {
    ("POST", "/api/providers/{name}/keys"): {"label": "spare", "secret": "sk-sim-openai-key-0002"},
    ("POST", "/api/providers/{name}/keys/{key_id}/rotate"): {
        "secret": "sk-sim-openai-key-0003",
        "grace_seconds": 60,
    },
    ("POST", "/api/providers/{name}/keys/{key_id}/state"): {"state": "disabled", "reason": "x"},
    ("POST", "/api/tenants/"): {"name": "Initech", "slug": "initech", "owner": MEMBER},
    ("PATCH", "/api/tenants/{slug}"): {"name": "Acme 2", "default_rpm": 60, "active": True},
    ("POST", "/api/tenants/{slug}/members"): {"username": NEWCOMER, "role": "viewer"},
    ("PATCH", "/api/tenants/{slug}/members/{username}"): {"role": "admin"},
    ("POST", "/api/tenants/{slug}/keys"): {"name": "ci", "rpm": 10, "allowed_models": []},
    ("PATCH", "/api/tenants/{slug}/keys/{key_id}"): {"name": "renamed", "cache_enabled": True},
    ("POST", "/api/tenants/{slug}/routes"): _ROUTE,
    ("PATCH", "/api/tenants/{slug}/routes/{alias}"): {"strategy": "round_robin"},
    ("POST", "/api/tenants/{slug}/invoices"): {"period": "2025-02"},
    ("POST", "/api/routes/"): _ROUTE,
    ("PATCH", "/api/routes/{alias}"): {"candidates": _ROUTE["candidates"]},
    ("POST", "/api/pricing/"): {
        "provider_type": "openai",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_per_million": "0.15",
        "output_per_million": "0.6",
    },
    ("POST", "/api/admin-tokens/"): {"name": "another"},
    # alerts (slice hD): email channels, so a test send goes to Django's mail outbox
    ("POST", "/api/tenants/{slug}/alert-channels"): {
        "name": "ops",
        "kind": "email",
        "target": "ops@example.com",
        "events": ["budget.threshold"],
    },
    ("PATCH", "/api/tenants/{slug}/alert-channels/{channel_id}"): {"enabled": False},
    ("POST", "/api/alert-channels"): {"name": "org", "kind": "email", "target": "a@example.com"},
    ("PATCH", "/api/alert-channels/{channel_id}"): {"name": "renamed"},
    ("POST", "/v1/chat/completions"): {
        "model": MODEL_OPENAI,
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 16,
    },
    ("POST", "/v1/embeddings"): {"model": "openai/text-embedding-3-small", "input": "Hello"},
    ("POST", "/v1/messages"): {
        "model": MODEL_ANTHROPIC,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Hello"}],
    },
}

# These authenticate with a console session only: the providers API knows no admin
# tokens yet, and a token may not mint tokens.
SESSION_ONLY = {("POST", "/api/admin-tokens/")}


def _served_schema(url: str) -> dict:
    """The schema exactly as the server serves it (no database needed)."""
    response = Client().get(url, headers={"host": "127.0.0.1"})
    assert response.status_code == 200, url
    return response.json()


def _with_examples(raw: dict) -> dict:
    raw = copy.deepcopy(raw)
    for path, operations in raw["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] in PATH_EXAMPLES:
                    parameter["example"] = PATH_EXAMPLES[parameter["name"]]
            body = BODY_EXAMPLES.get((method.upper(), path))
            if body is not None:
                operation["requestBody"]["content"]["application/json"]["example"] = body
    return raw


def _config(max_examples: int, coverage: bool = True) -> schemathesis.Config:
    """``coverage`` off: no coverage phase (boundary values, other HTTP methods), so the
    no-auth tests send the documented method only, and so may insist on 401."""
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": max_examples,
                "deterministic": True,
                "database": "none",
                # credentials are ours to send, not the generator's to invent
                "with-security-parameters": False,
            },
            "phases": {"stateful": {"enabled": False}, "coverage": {"enabled": coverage}},
        }
    )


def _schema(url: str, max_examples: int, coverage: bool = True):
    return schemathesis.openapi.from_dict(
        _with_examples(_served_schema(url)), config=_config(max_examples, coverage)
    )


management_schema = _schema("/api/openapi.json", MAX_EXAMPLES)
gateway_schema = _schema("/v1/openapi.json", MAX_EXAMPLES)
management_schema_no_auth = _schema("/api/openapi.json", NO_AUTH_EXAMPLES, coverage=False)
gateway_schema_no_auth = _schema("/v1/openapi.json", NO_AUTH_EXAMPLES, coverage=False)


def _with_pk(model, obj, pk: int = FIXED_ID):
    """Give a fresh row (nothing refers to it yet) the fixed id the examples name."""
    model.objects.filter(pk=obj.pk).update(id=pk)
    return model.objects.get(pk=pk)


@pytest.fixture
def fuzz_world(world, make_key):
    """``world`` plus everything the management API's paths name, and credentials."""
    from django.contrib.auth import get_user_model

    from providers_app.models import ApiKey
    from providers_app.services.credentials import api_key_add
    from tenants_app.models import (
        AdminToken,
        Invoice,
        Membership,
        ModelRoute,
        Pricing,
        Role,
        VirtualKey,
    )
    from tenants_app.services.keys import admin_token_create

    users = get_user_model().objects
    staff = users.create_user("staff", is_staff=True)
    member = users.create_user(MEMBER)
    users.create_user(NEWCOMER)
    Membership.objects.create(user=staff, tenant=world.tenant, role=Role.OWNER)
    Membership.objects.create(user=member, tenant=world.tenant, role=Role.MEMBER)
    _token, token_secret = admin_token_create(user=staff, name="fuzz")
    _with_pk(AdminToken, admin_token_create(user=staff, name="spare")[0])
    key, _secret = make_key(world.tenant, name="spare", created_by=staff)
    _with_pk(VirtualKey, key)
    openai = world.providers["openai"]
    _with_pk(ApiKey, api_key_add(provider=openai, label="key 2", secret="sk-sim-openai-key-0009"))
    candidates = [{"provider": "openai", "model": "gpt-4o-mini"}]
    ModelRoute.objects.create(tenant=world.tenant, alias=ALIAS, candidates=candidates)
    ModelRoute.objects.create(tenant=None, alias=ALIAS, candidates=candidates)
    Pricing.objects.create(
        pk=FIXED_ID,
        provider_type="openai",
        provider=openai,
        model="gpt-4o-mini",
        input_per_million=Decimal("0.15"),
        output_per_million=Decimal("0.6"),
    )
    Invoice.objects.create(
        tenant=world.tenant,
        period=dt.date(2025, 1, 1),
        total_usd=Decimal("1.5"),
        lines=[],
        final=True,
        generated_at=dt.datetime(2025, 2, 1, tzinfo=dt.UTC),
    )
    from tenants_app.models import AlertChannel
    from tenants_app.services.alerts import alert_channel_create

    _with_pk(
        AlertChannel,
        alert_channel_create(
            tenant=world.tenant, name="ops", kind="email", target="ops@example.com"
        )[0],
    )
    from tenants_app.models import RequestBody, UsageRecord

    now = dt.datetime(2025, 1, 15, 12, tzinfo=dt.UTC)
    UsageRecord.objects.create(
        request_id="fuzz-request-1",
        tenant=world.tenant,
        virtual_key_id=FIXED_ID,  # the spare key, given its fixed id above
        status="success",
        attempts=[
            {
                "provider": "openai",
                "credential_id": "key:1",
                "model": "gpt-4o-mini",
                "status": "answered",
                "http_status": None,
                "error_type": "",
                "latency_ms": 1.5,
                "answered": True,
            }
        ],
        created_at=now,
    )
    RequestBody.objects.create(
        request_id="fuzz-request-1",
        tenant=world.tenant,
        request="{}",
        response="hi",
        created_at=now,
        expires_at=now + dt.timedelta(days=7),
    )
    session = Client()
    session.force_login(staff)
    return {
        "token": token_secret,
        "cookies": {"sessionid": session.cookies["sessionid"].value, "csrftoken": CSRF_TOKEN},
        "world": world,
    }


# The seeded world is made once per operation, not per generated case: on purpose.
fixtures_once_per_operation = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def _management_credentials(case, fuzz_world) -> dict:
    headers = {"X-CSRFToken": CSRF_TOKEN}
    if (case.method.upper(), case.path) not in SESSION_ONLY:
        headers["Authorization"] = f"Bearer {fuzz_world['token']}"
    return {"headers": headers, "cookies": fuzz_world["cookies"]}


@management_schema.parametrize()
@fixtures_once_per_operation
def test_management_api(case, fuzz_world, gateway_server):
    case.call_and_validate(
        base_url=gateway_server.url,
        checks=CHECKS,
        timeout=REQUEST_TIMEOUT,
        **_management_credentials(case, fuzz_world),
    )


@gateway_schema.parametrize()
@fixtures_once_per_operation
def test_gateway_api(case, world, gateway_server):
    _call_a_real_model(case, world)
    case.call_and_validate(
        base_url=gateway_server.url,
        checks=CHECKS,
        timeout=REQUEST_TIMEOUT,
        headers={"Authorization": f"Bearer {world.secret}"},
    )


def _call_a_real_model(case, world) -> None:
    """A generated model name is almost never one the tenant has, so most fuzzed bodies
    would stop at a 404 before any format translation or provider call. Two cases in
    three name a real model instead, of every provider type in turn (chosen from the
    body itself, so the same case always gets the same model)."""
    body = case.body
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return
    pick = zlib.crc32(json.dumps(body, sort_keys=True, default=str).encode())
    if pick % 3 == 0:
        return
    types = sorted(world.providers)
    body["model"] = world.model(types[pick // 3 % len(types)])


@management_schema_no_auth.parametrize()
@fixtures_once_per_operation
def test_management_api_without_auth(case, gateway_server):
    response = case.call_and_validate(
        base_url=gateway_server.url, checks=CHECKS, timeout=REQUEST_TIMEOUT
    )
    if case.method.upper() != "GET" and response.status_code == 403:
        # ninja's session auth checks CSRF before it looks for a session
        assert "CSRF" in response.json()["error"]["message"]
    else:
        assert response.status_code == 401, response.text


@gateway_schema_no_auth.parametrize()
@fixtures_once_per_operation
def test_gateway_api_without_auth(case, gateway_server):
    response = case.call_and_validate(
        base_url=gateway_server.url, checks=CHECKS, timeout=REQUEST_TIMEOUT
    )
    assert response.status_code == 401, response.text
