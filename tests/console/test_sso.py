"""OIDC sign-in with role mapping: the console signs people in through an OpenID Connect
provider -- the simulator's authorisation server, over real loopback HTTP -- and maps
their groups to staff and tenant roles at every sign-in, granting and revoking.

Each test has its own client id at the simulator (so its user and faults are its own)
and its own subject there. The Django test client plays the browser: it starts at
/console/sso/login/, the redirect is followed to the simulator with httpx, and the
simulator's redirect back is fed to the test client's callback."""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory

from tenants_app.auth_backends import LocalPasswordBackend
from tenants_app.models import AuditEvent, Membership, Role, SsoIdentity
from tenants_app.services.tenants import member_add

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


class IdentityProvider:
    """The simulator's OIDC side for one test: its client id, and its users."""

    def __init__(self, simulator, client_id: str) -> None:
        self.url = simulator.url
        self.client_id = client_id

    def user(self, sub: str, groups: list[str], email: str | None = None) -> str:
        body = {"email": email or f"{sub}@example.com", "name": sub.title(), "groups": groups}
        httpx.put(f"{self.url}/_sim/oidc/users/{sub}", json=body).raise_for_status()
        return sub

    def signs_in_as(self, sub: str, fault: str | None = None) -> None:
        httpx.put(
            f"{self.url}/_sim/oidc/clients/{self.client_id}", json={"user": sub, "fault": fault}
        ).raise_for_status()


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def idp(settings, simulator) -> IdentityProvider:
    # "confidential-" clients must authenticate at the simulator's token endpoint
    client_id = f"confidential-aipk-{uuid.uuid4().hex[:10]}"
    settings.OIDC_ISSUER = simulator.url
    settings.OIDC_DISCOVERY_URL = f"{simulator.url}/.well-known/openid-configuration"
    settings.OIDC_CLIENT_ID = client_id
    settings.OIDC_CLIENT_SECRET = f"secret-{client_id}"
    settings.OIDC_PROVIDER_NAME = "Simulated IdP"
    settings.OIDC_STAFF_GROUPS = ["aipk-staff"]
    settings.OIDC_SUPERUSER_GROUPS = ["aipk-root"]
    return IdentityProvider(simulator, client_id)


def owner_of_acme(tenant):
    owner = get_user_model().objects.create_user(f"owner-{uuid.uuid4().hex[:6]}")
    Membership.objects.create(user=owner, tenant=tenant, role=Role.OWNER)
    return owner


@pytest.fixture
def sub() -> str:
    return f"ada-{uuid.uuid4().hex[:8]}"


def sso_sign_in(client: Client, next_url: str | None = None):
    """One full round: aipk -> identity provider (real HTTP) -> aipk's callback."""
    start = client.get("/console/sso/login/", {"next": next_url} if next_url else {})
    assert start.status_code == 302, start.content
    authorize = urlsplit(start["Location"])
    query = parse_qs(authorize.query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    at_idp = httpx.get(start["Location"], follow_redirects=False, timeout=10)
    assert at_idp.status_code == 302, at_idp.text
    back = urlsplit(at_idp.headers["location"])
    assert back.path == "/console/sso/callback/"
    return client.get(f"{back.path}?{back.query}")


def signed_in_user(client: Client):
    user_id = client.session.get("_auth_user_id")
    return get_user_model().objects.get(pk=user_id) if user_id else None


# --------------------------------------------------------------------------- the page


def test_it_offers_sign_in_with_the_provider_only_when_configured(client, idp, settings):
    page = client.get("/console/login/").content.decode()
    assert "Sign in with Simulated IdP" in page
    assert 'name="password"' in page

    settings.OIDC_DISCOVERY_URL = settings.OIDC_CLIENT_ID = ""
    page = client.get("/console/login/").content.decode()
    assert "Sign in with" not in page
    assert client.get("/console/sso/login/").status_code == 404


# --------------------------------------------------------------------------- signing in


def test_it_creates_the_account_at_the_first_sign_in_linked_by_subject(client, idp, sub):
    idp.signs_in_as(idp.user(sub, groups=[], email="ada@example.com"))

    response = sso_sign_in(client)

    assert response.status_code == 302 and response["Location"] == "/console/"
    user = signed_in_user(client)
    assert user is not None and user.email == "ada@example.com"
    assert not user.has_usable_password()
    assert not user.is_staff and not user.memberships.exists()
    identity = SsoIdentity.objects.get(user=user)
    assert (identity.issuer, identity.subject) == (idp.url, sub)
    event = AuditEvent.objects.get(action="auth.sso_sign_in")
    assert event.actor == user and event.changes["account_created"] is True
    assert event.changes["subject"] == sub
    assert client.get("/console/").status_code == 200


def test_it_signs_the_same_subject_into_the_same_account_even_with_a_new_email(client, idp, sub):
    idp.signs_in_as(idp.user(sub, groups=[], email="ada@example.com"))
    sso_sign_in(client)
    first = signed_in_user(client)

    idp.user(sub, groups=[], email="ada.lovelace@example.com")
    again = Client()
    sso_sign_in(again)

    assert signed_in_user(again) == first
    first.refresh_from_db()
    assert first.email == "ada.lovelace@example.com"
    assert get_user_model().objects.filter(sso_identity__subject=sub).count() == 1


def test_it_never_links_an_existing_local_account_by_email_or_username(
    client, idp, django_user_model
):
    local = django_user_model.objects.create_user(
        "grace", email="grace@example.com", password=PASSWORD, is_staff=True
    )
    idp.signs_in_as(idp.user("grace", groups=[], email="grace@example.com"))

    sso_sign_in(client)

    user = signed_in_user(client)
    assert user != local and user.username == "grace-2"
    assert not user.is_staff


def test_it_follows_a_local_next_address_and_ignores_one_elsewhere(client, idp, sub):
    idp.signs_in_as(idp.user(sub, groups=[]))
    assert sso_sign_in(client, next_url="/console/audit/")["Location"] == "/console/audit/"
    assert sso_sign_in(Client(), next_url="https://evil.example/")["Location"] == "/console/"


# --------------------------------------------------------------------------- role mapping


def test_it_makes_staff_and_superusers_from_their_groups(client, idp, sub):
    idp.signs_in_as(idp.user(sub, groups=["aipk-staff"]))
    sso_sign_in(client)
    user = signed_in_user(client)
    assert user.is_staff and not user.is_superuser
    assert client.get("/admin/").status_code == 200

    root = f"root-{sub}"
    idp.signs_in_as(idp.user(root, groups=["aipk-root"]))
    other = Client()
    sso_sign_in(other)
    assert signed_in_user(other).is_superuser and signed_in_user(other).is_staff


@pytest.mark.parametrize("role", ["owner", "admin", "member", "viewer"])
def test_it_gives_the_tenant_role_its_group_names(
    client, idp, sub, tenant, other_tenant, outsider, client_as, role
):
    idp.signs_in_as(idp.user(sub, groups=[f"aipk:acme:{role}", "unrelated-group"]))

    sso_sign_in(client)

    user = signed_in_user(client)
    membership = Membership.objects.get(user=user)
    assert (membership.tenant, membership.role, membership.sso_managed) == (tenant, role, True)
    # the role works like a hand-made one: Acme's pages open, the second tenant's do not
    assert client.get("/console/tenants/acme/").status_code == 200
    assert client.get("/console/tenants/globex/").status_code == 404
    added = AuditEvent.objects.get(action="member.add", tenant=tenant)
    assert added.actor_label == "sso" and added.changes["role"] == role
    # the owner of Acme sees where the membership came from
    members_page = client_as(owner_of_acme(tenant)).get("/console/tenants/acme/members/")
    assert ">SSO</span>" in members_page.content.decode()


def test_it_takes_the_highest_role_and_ignores_tenants_that_do_not_exist(client, idp, sub, tenant):
    idp.signs_in_as(
        idp.user(sub, groups=["aipk:acme:member", "aipk:acme:admin", "aipk:nowhere:owner"])
    )

    sso_sign_in(client)

    user = signed_in_user(client)
    assert list(user.memberships.values_list("tenant__slug", "role")) == [("acme", "admin")]
    event = AuditEvent.objects.get(action="auth.sso_sign_in")
    assert event.changes["unknown_tenants"] == ["nowhere"]


def test_it_reads_tenant_groups_through_a_configured_pattern(client, idp, sub, tenant, settings):
    settings.OIDC_TENANT_ROLE_PATTERN = r"^team-(?P<tenant>[a-z]+)-(?P<role>[a-z]+)$"
    idp.signs_in_as(idp.user(sub, groups=["team-acme-owner", "aipk:acme:member"]))

    sso_sign_in(client)

    assert list(signed_in_user(client).memberships.values_list("role", flat=True)) == ["owner"]


def test_it_revokes_at_the_next_sign_in_what_a_removed_group_granted(
    client, idp, sub, tenant, other_tenant
):
    idp.signs_in_as(idp.user(sub, groups=["aipk-staff", "aipk:acme:admin", "aipk:globex:member"]))
    sso_sign_in(client)
    user = signed_in_user(client)
    assert user.is_staff and user.memberships.count() == 2

    idp.user(sub, groups=["aipk:acme:member"])
    again = Client()
    sso_sign_in(again)

    user.refresh_from_db()
    assert not user.is_staff
    assert list(user.memberships.values_list("tenant__slug", "role")) == [("acme", "member")]
    assert again.get("/console/tenants/globex/").status_code == 404
    assert again.get("/admin/").status_code == 302  # to the sign-in page: no longer staff
    removed = AuditEvent.objects.get(action="member.remove", tenant=other_tenant)
    assert removed.actor_label == "sso"
    changed = AuditEvent.objects.get(action="member.update", tenant=tenant)
    assert changed.changes["role"] == {"from": "admin", "to": "member"}

    idp.user(sub, groups=[])
    sso_sign_in(Client())
    assert not user.memberships.exists()


def test_it_leaves_hand_made_memberships_and_staff_alone(
    client, idp, sub, tenant, other_tenant, staff
):
    idp.signs_in_as(idp.user(sub, groups=["aipk:acme:viewer"]))
    sso_sign_in(client)
    user = signed_in_user(client)
    # by hand, after the first sign-in: staff, and a membership of Globex
    member_add(tenant=other_tenant, user=user, role=Role.ADMIN, actor=staff)
    user.is_staff = True
    user.save()

    # the groups now say owner of Globex and nothing of Acme or staff
    idp.user(sub, groups=["aipk:globex:owner"])
    sso_sign_in(Client())

    user.refresh_from_db()
    assert user.is_staff
    assert list(user.memberships.values_list("tenant__slug", "role", "sso_managed")) == [
        ("globex", "admin", False)
    ]


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("bad_signature", "invalid_id_token:bad_signature"),
        ("wrong_nonce", "invalid_id_token:invalid_claim:nonce"),
        ("wrong_issuer", "invalid_id_token:invalid_claim:iss"),
        ("wrong_audience", "invalid_id_token:invalid_claim:aud"),
        ("expired", "invalid_id_token:expired_token:exp"),
    ],
)
def test_it_refuses_an_id_token_that_does_not_verify(client, idp, sub, tenant, fault, reason):
    idp.signs_in_as(idp.user(sub, groups=["aipk-staff", "aipk:acme:owner"]), fault=fault)

    response = sso_sign_in(client)

    page = response.content.decode()
    assert response.status_code == 400
    assert "could not be verified" in page and "Nobody was signed in" in page
    assert signed_in_user(client) is None
    assert not SsoIdentity.objects.exists() and not Membership.objects.exists()
    failed = AuditEvent.objects.get()
    assert (failed.action, failed.changes) == ("auth.sso_sign_in_failed", {"reason": reason})


def test_it_refuses_an_id_token_signed_with_a_key_the_provider_does_not_publish(client, idp, sub):
    idp.signs_in_as(idp.user(sub, groups=["aipk-staff"]), fault="unknown_key")

    response = sso_sign_in(client)

    assert response.status_code == 400
    assert signed_in_user(client) is None
    # authlib fetched the key set again for the unknown key id, and still found none
    failed = AuditEvent.objects.get(action="auth.sso_sign_in_failed")
    assert failed.changes == {"reason": "invalid_id_token:invalid_key_id"}


def test_it_says_so_when_the_user_denies_consent(settings, simulator, client, idp):
    # the simulator denies every client whose id starts with sim-deny
    settings.OIDC_CLIENT_ID = f"sim-deny-{uuid.uuid4().hex[:8]}"

    response = sso_sign_in(client)

    assert response.status_code == 403
    assert "did not allow the sign-in" in response.content.decode()
    assert signed_in_user(client) is None


def test_it_refuses_a_callback_whose_state_this_session_did_not_start(client, idp, sub):
    idp.signs_in_as(idp.user(sub, groups=["aipk-staff"]))
    start = Client().get("/console/sso/login/")
    at_idp = httpx.get(start["Location"], follow_redirects=False)
    back = urlsplit(at_idp.headers["location"])

    # another browser (a login CSRF attempt) brings the code back
    response = client.get(f"{back.path}?{back.query}")

    assert response.status_code == 400
    assert "not started here" in response.content.decode()
    assert signed_in_user(client) is None


def test_it_refuses_the_same_callback_twice(client, idp, sub):
    idp.signs_in_as(idp.user(sub, groups=[]))
    start = client.get("/console/sso/login/")
    back = urlsplit(httpx.get(start["Location"], follow_redirects=False).headers["location"])
    assert client.get(f"{back.path}?{back.query}").status_code == 302
    client.logout()

    assert client.get(f"{back.path}?{back.query}").status_code == 400


def test_it_refuses_a_discovery_document_that_names_another_issuer(client, idp, settings):
    settings.OIDC_ISSUER = "https://login.example.com"

    response = client.get("/console/sso/login/")

    assert response.status_code == 502
    assert "names another issuer" in response.content.decode()


def test_it_says_so_when_the_provider_cannot_be_reached(client, idp, settings):
    settings.OIDC_ISSUER = ""
    settings.OIDC_DISCOVERY_URL = "http://127.0.0.1:9/.well-known/openid-configuration"

    response = client.get("/console/sso/login/")

    assert response.status_code == 502
    assert "could not be reached" in response.content.decode()


def test_it_refuses_a_deactivated_account(client, idp, sub):
    idp.signs_in_as(idp.user(sub, groups=[]))
    sso_sign_in(client)
    user = signed_in_user(client)
    user.is_active = False
    user.save()

    response = sso_sign_in(Client())

    assert response.status_code == 403
    assert "deactivated" in response.content.decode()


def test_it_keeps_tokens_and_the_client_secret_out_of_pages_and_the_audit_log(
    client, idp, sub, settings
):
    idp.signs_in_as(idp.user(sub, groups=["aipk-staff"]))
    sso_sign_in(client)
    idp.signs_in_as(sub, fault="bad_signature")
    failed = sso_sign_in(Client())

    stored = str(list(AuditEvent.objects.values("changes", "object_repr")))
    for text in (stored, failed.content.decode()):
        assert settings.OIDC_CLIENT_SECRET not in text
        assert "sim-at-" not in text and "sim-rt-" not in text and "eyJ" not in text


# --------------------------------------------------------------------------- local passwords


@pytest.fixture
def grace(django_user_model):
    return django_user_model.objects.create_user("grace", password=PASSWORD, is_staff=True)


def test_it_refuses_every_password_form_when_local_passwords_are_off(client, idp, settings, grace):
    settings.LOCAL_PASSWORDS_ENABLED = False

    page = client.get("/console/login/").content.decode()
    console = client.post("/console/login/", {"username": "grace", "password": PASSWORD})
    admin = client.post("/admin/login/", {"username": "grace", "password": PASSWORD})

    assert 'name="password"' not in page and "Sign in with Simulated IdP" in page
    assert (
        console.status_code == 403 and "Password sign-in is turned off" in console.content.decode()
    )
    assert admin.status_code == 403
    assert (
        client.get("/admin/login/?next=/admin/")["Location"] == "/console/login/?next=%2Fadmin%2F"
    )
    # whatever else asks Django to check a password gets no user either
    request = RequestFactory().post("/console/login/")
    assert LocalPasswordBackend().authenticate(request, "grace", PASSWORD) is None
    settings.LOCAL_PASSWORDS_ENABLED = True
    assert LocalPasswordBackend().authenticate(request, "grace", PASSWORD) == grace
    assert signed_in_user(client) is None


def test_it_still_signs_in_through_sso_when_local_passwords_are_off(client, idp, settings, sub):
    settings.LOCAL_PASSWORDS_ENABLED = False
    idp.signs_in_as(idp.user(sub, groups=["aipk-staff"]))

    sso_sign_in(client)

    assert signed_in_user(client).is_staff
    assert client.get("/console/").status_code == 200
    assert client.get("/admin/").status_code == 200


def test_it_keeps_password_sign_in_beside_sso_by_default(client, idp, grace):
    response = client.post("/console/login/", {"username": "grace", "password": PASSWORD})
    assert response.status_code == 302
    assert signed_in_user(client) == grace


def test_it_leaves_login_throttling_as_it_was(client, idp, settings, grace, sub):
    settings.AXES_COOLOFF_TIME = timedelta(minutes=5)
    for n in range(settings.AXES_FAILURE_LIMIT + 2):
        client.post("/console/login/", {"username": "grace", "password": f"wrong-{n}"})

    locked = client.post("/console/login/", {"username": "grace", "password": PASSWORD})
    assert locked.status_code == 429
    assert signed_in_user(client) is None

    # single sign-on is not a password: the identity provider throttles its own sign-in
    idp.signs_in_as(idp.user(sub, groups=[]))
    assert sso_sign_in(client).status_code == 302
    assert signed_in_user(client) is not None
    # ...and signing someone in through it does not lift grace's lockout
    assert (
        Client().post("/console/login/", {"username": "grace", "password": PASSWORD}).status_code
        == 429
    )
