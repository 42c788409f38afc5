"""The management API, endpoint by endpoint. Who may call what is the isolation
matrix's business (test_isolation_matrix.py); here: what each endpoint does."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_it_lists_my_tenants(client_as, owner, outsider):
    response = client_as(owner).get("/api/tenants/")
    assert response.status_code == 200
    assert [t["slug"] for t in response.json()] == ["acme"]
    assert response.json()[0]["role"] == "owner"
