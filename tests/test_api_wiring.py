"""How aipk_site/api.py wires the routers of both apps into the one management API."""

from __future__ import annotations

from aipk_site.api import api

SESSION_OR_TOKEN = [{"AdminTokenAuth": []}, {"SessionAuth": []}]


def _operations() -> list[tuple[str, str, dict]]:
    schema = api.get_openapi_schema()
    return [
        (method.upper(), path, operation)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    ]


def test_it_authenticates_every_operation_the_same_way():
    different = [
        (method, path)
        for method, path, operation in _operations()
        if operation.get("security") != SESSION_OR_TOKEN
    ]
    assert different == []


def test_it_keeps_the_published_operation_ids():
    ids = [operation["operationId"] for _method, _path, operation in _operations()]
    assert len(ids) == len(set(ids))
    assert [
        i for i in ids if not i.startswith(("tenants_app_management_api_", "providers_app_api_"))
    ] == []
    assert "tenants_app_management_api_usage_right_now" in ids
    assert "providers_app_api_test_key" in ids
