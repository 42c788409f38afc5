"""The API docs in a real browser with no way out: every request to another host than
the test server is aborted and recorded. /api/docs and /v1/docs must still render their
operations, ask nothing outside, log no console error and break no CSP rule."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

# (page, an operation Swagger UI renders from that API's openapi.json)
DOCS = [
    ("/api/docs", "operations-providers-providers_app_api_list_providers"),
    ("/v1/docs", "operations-default-aipk_site_gateway_openapi_chat_completions"),
]


@pytest.mark.parametrize(("path", "operation_id"), DOCS)
def test_it_renders_the_docs_with_no_outside_request(console, path, operation_id):
    page = console.page
    server = urlsplit(console.url).netloc
    outside: list[str] = []
    errors: list[str] = []

    def only_the_server(route):
        url = route.request.url
        if urlsplit(url).netloc == server or url.startswith("data:"):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    page.context.route("**/*", only_the_server)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    console.goto(path)
    operation = page.locator(f"#{operation_id}")
    expect(operation).to_be_visible()
    page.wait_for_load_state("networkidle")
    console.shot(path.strip("/").replace("/", "-"))

    assert outside == []
    assert errors == []
