"""The API tokens page in a real browser: a token made there is shown once, works on
the management API, and stops working the moment it is revoked."""

import re

import httpx
from playwright.sync_api import expect


def test_it_makes_a_token_that_opens_the_api_and_revokes_it(console, console_user):
    page = console.page
    console.sign_in(console_user("ada"))
    page.get_by_role("navigation", name="Console").get_by_role("link", name="API tokens").click()
    expect(page.get_by_role("heading", name="API tokens", level=1)).to_be_visible()
    expect(page.get_by_text("No tokens yet.")).to_be_visible()

    page.get_by_label("Name").fill("CI deploys")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token-secret").inner_text()
    expect(page.get_by_role("button", name="Copy secret")).to_be_visible()
    assert page.url.endswith("/console/tokens/")  # the secret never reaches the address bar
    console.shot("token-created")
    api = httpx.get(
        console.url + "/api/tenants/", headers={"Authorization": f"Bearer {secret}"}, timeout=10
    )
    assert api.status_code == 200

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke CI deploys").click()
    expect(
        page.get_by_role("row", name=re.compile("CI deploys")).get_by_text("revoked")
    ).to_be_visible()
    expect(page.locator("#new-token-secret")).to_have_count(0)
    page.reload()
    assert secret not in page.content()
    api = httpx.get(
        console.url + "/api/tenants/", headers={"Authorization": f"Bearer {secret}"}, timeout=10
    )
    assert api.status_code == 401
