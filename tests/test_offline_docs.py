"""/api/docs and /v1/docs work with no internet: Swagger UI comes from aipk's own /static/
(django-ninja's bundled copy), and the pages name no other host (docs/API.md, "Docs").
The browser's view of the same is tests/e2e/test_e2e_api_docs.py."""

from __future__ import annotations

import json
import re

import pytest

DOCS_PAGES = {"/api/docs": "/api/openapi.json", "/v1/docs": "/v1/openapi.json"}
# any absolute URL, however it is quoted, and protocol-relative ones ("//cdn...")
ABSOLUTE_URL = re.compile(r"""(?:https?:)?//[^\s"'<>]+""", re.IGNORECASE)


def _assets(body: str) -> list[str]:
    loaded = re.findall(r'<script[^>]*\ssrc="([^"]*)"', body)
    loaded += re.findall(r'<link[^>]*\shref="([^"]*)"', body)
    return loaded


@pytest.mark.django_db
@pytest.mark.parametrize("path", sorted(DOCS_PAGES))
def test_it_references_no_url_outside_the_host(client, path):
    body = client.get(path).content.decode()

    assert ABSOLUTE_URL.findall(body) == []
    assets = _assets(body)
    assert assets and all(url.startswith("/static/") for url in assets), assets


@pytest.mark.django_db
@pytest.mark.parametrize("path", sorted(DOCS_PAGES))
def test_it_serves_every_asset_of_the_page_itself(client, path):
    body = client.get(path).content.decode()

    for url in _assets(body):
        response = client.get(url)
        assert response.status_code == 200, url
        content = b"".join(response.streaming_content) if response.streaming else response.content
        assert content, url


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "schema_url"), sorted(DOCS_PAGES.items()))
def test_it_points_swagger_at_this_apis_schema_without_the_online_validator(
    client, path, schema_url
):
    body = client.get(path).content.decode()
    settings_block = re.search(
        r'<script type="application/json" id="swagger-settings">(.*?)</script>', body, re.S
    )

    assert settings_block is not None
    swagger_settings = json.loads(settings_block.group(1))
    assert swagger_settings["url"] == schema_url
    # Swagger UI's default validator badge is an <img> from validator.swagger.io
    assert swagger_settings["validatorUrl"] is None
    assert client.get(schema_url).status_code == 200
