"""/metrics and /metrics.json behind the optional bearer token METRICS_TOKEN."""

from __future__ import annotations

import pytest

TOKEN = "metrics-token-for-tests-0123456789"
PATHS = ("/metrics", "/metrics.json")


@pytest.fixture
def with_token(settings):
    settings.METRICS_TOKEN = TOKEN


@pytest.mark.parametrize("path", PATHS)
def test_it_refuses_a_scrape_without_the_token(client, with_token, path):
    response = client.get(path)

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("authentication_error", "metrics_token_required")
    assert "aipk_" not in response.content.decode()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, "Bearer "],
)
def test_it_refuses_a_wrong_token(client, with_token, path, authorization):
    response = client.get(path, headers={"Authorization": authorization})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_metrics_token"
    assert TOKEN not in response.content.decode()


def test_it_serves_the_metrics_to_the_right_token(client, with_token):
    text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    summary = client.get("/metrics.json", headers={"Authorization": f"bearer {TOKEN}"})

    assert text.status_code == 200 and b"aipk_" in text.content
    assert summary.status_code == 200 and "providers" in summary.json()


def test_it_leaves_the_metrics_open_when_no_token_is_set(client, settings):
    settings.METRICS_TOKEN = ""

    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics.json").status_code == 200


def test_it_warns_in_the_deploy_check_when_no_token_is_set(settings):
    from aipk_site.infra.metrics import check_metrics_token

    settings.METRICS_TOKEN = ""
    assert [message.id for message in check_metrics_token()] == ["aipk.W001"]
    settings.METRICS_TOKEN = TOKEN
    assert check_metrics_token() == []
