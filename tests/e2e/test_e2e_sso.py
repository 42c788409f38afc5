"""Single sign-on in a real browser: chromium goes from the console's sign-in page to the
simulator's OpenID Connect provider and back, and lands signed in with the roles its
groups name (docs/SECURITY.md "Single sign-on")."""

from __future__ import annotations

import re
import uuid

import httpx

from tenants_app.models import Membership, Tenant


def test_it_signs_in_through_the_identity_provider_with_the_roles_its_groups_name(
    console, settings, simulator
):
    acme = Tenant.objects.create(name="Acme", slug="acme")
    client_id = f"confidential-aipk-{uuid.uuid4().hex[:10]}"
    settings.OIDC_ISSUER = simulator.url
    settings.OIDC_DISCOVERY_URL = f"{simulator.url}/.well-known/openid-configuration"
    settings.OIDC_CLIENT_ID = client_id
    settings.OIDC_CLIENT_SECRET = f"secret-{client_id}"
    settings.OIDC_PROVIDER_NAME = "Simulated IdP"
    settings.LOCAL_PASSWORDS_ENABLED = False
    sub = f"ada-{uuid.uuid4().hex[:6]}"
    httpx.put(
        f"{simulator.url}/_sim/oidc/users/{sub}",
        json={"email": "ada@example.com", "name": "Ada", "groups": ["aipk:acme:admin"]},
    ).raise_for_status()
    httpx.put(
        f"{simulator.url}/_sim/oidc/clients/{client_id}", json={"user": sub}
    ).raise_for_status()

    console.goto("/console/tenants/acme/")
    console.page.wait_for_url(re.compile(r".*/console/login/\?next=.*"))
    assert console.page.get_by_label("Password").count() == 0
    console.shot("sign-in-sso-only")
    console.page.get_by_role("link", name="Sign in with Simulated IdP").click()

    console.page.wait_for_url(re.compile(r".*/console/tenants/acme/$"))
    assert console.page.get_by_role("heading", name="Acme").first.is_visible()
    console.shot("signed-in-as-tenant-admin")
    membership = Membership.objects.get(tenant=acme)
    assert (membership.user.email, membership.role, membership.sso_managed) == (
        "ada@example.com",
        "admin",
        True,
    )
