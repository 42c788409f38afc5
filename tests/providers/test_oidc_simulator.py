"""The simulator as an OpenID Connect provider, spoken to directly over loopback HTTP:
discovery, a signing key in the JWKS, RS256 id_tokens that verify with it, userinfo,
and the test controls (users, per-client user and faults)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

from providers_app.kit.oauth import authorization_url, new_pkce_pair

REDIRECT = "http://127.0.0.1:1/cb"


def _discovery(simulator) -> dict:
    response = httpx.get(simulator.url + "/.well-known/openid-configuration")
    assert response.status_code == 200
    return response.json()


def _sign_in(simulator, *, scope="openid email profile", nonce="n-1", **extra) -> dict:
    """authorize (PKCE S256) then the code grant; the token endpoint's reply."""
    client_id = extra.pop("client_id", f"oidc-client-{secrets.token_hex(4)}")
    pkce = new_pkce_pair()
    url = authorization_url(
        simulator.url + "/oauth/authorize",
        client_id=client_id,
        redirect_uri=REDIRECT,
        scope=scope,
        state="st-1",
        pkce=pkce,
    )
    params = ({"nonce": nonce} if nonce else {}) | extra
    if params:
        url += "&" + urlencode(params)
    response = httpx.get(url, follow_redirects=False)
    assert response.status_code == 302
    code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
    token = httpx.post(
        simulator.url + "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "code_verifier": pkce.verifier,
        },
    )
    assert token.status_code == 200, token.text
    return token.json() | {"client_id": client_id}


def _verified_claims(simulator, id_token: str) -> dict:
    keys = KeySet.import_key_set(httpx.get(_discovery(simulator)["jwks_uri"]).json())
    return jwt.decode(id_token, keys, algorithms=["RS256"]).claims


def test_it_publishes_a_discovery_document_naming_itself_the_issuer(simulator):
    doc = _discovery(simulator)

    assert doc["issuer"] == simulator.url
    assert doc["authorization_endpoint"] == simulator.url + "/oauth/authorize"
    assert doc["token_endpoint"] == simulator.url + "/oauth/token"
    assert doc["userinfo_endpoint"] == simulator.url + "/oauth/userinfo"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "S256" in doc["code_challenge_methods_supported"]


def test_it_publishes_only_the_public_half_of_its_rsa_key(simulator):
    (key,) = httpx.get(simulator.url + "/oauth/jwks").json()["keys"]

    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
    assert key["kid"] and key["n"] and key["e"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


def test_it_signs_an_id_token_with_every_claim_a_relying_party_checks(simulator):
    httpx.put(
        simulator.url + "/_sim/oidc/users/grace",
        json={"email": "grace@example.com", "name": "Grace", "groups": ["aipk-staff"]},
    ).raise_for_status()

    token = _sign_in(simulator, nonce="nonce-42", login_hint="grace")
    claims = _verified_claims(simulator, token["id_token"])

    assert claims["iss"] == simulator.url
    assert claims["aud"] == token["client_id"]
    assert claims["sub"] == "grace"
    assert claims["nonce"] == "nonce-42"
    assert claims["exp"] > claims["iat"]
    assert (claims["email"], claims["name"], claims["groups"]) == (
        "grace@example.com",
        "Grace",
        ["aipk-staff"],
    )
    digest = hashlib.sha256(token["access_token"].encode()).digest()[:16]
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_it_leaves_the_nonce_out_when_none_was_sent(simulator):
    claims = _verified_claims(simulator, _sign_in(simulator, nonce=None)["id_token"])
    assert "nonce" not in claims and claims["sub"] == "sim-user"


def test_it_answers_userinfo_for_the_access_token_and_nothing_else(simulator):
    token = _sign_in(simulator, login_hint="sim-staff")

    info = httpx.get(
        simulator.url + "/oauth/userinfo",
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    refused = httpx.get(
        simulator.url + "/oauth/userinfo", headers={"Authorization": "Bearer sim-at-forged"}
    )

    assert info.status_code == 200
    assert info.json() == {
        "sub": "sim-staff",
        "email": "sim-staff@example.com",
        "email_verified": True,
        "name": "Sim Staff",
        "preferred_username": "sim-staff",
        "groups": ["aipk-staff"],
    }
    assert refused.status_code == 401
    assert "invalid_token" in refused.headers["www-authenticate"]


def test_it_signs_in_the_user_set_for_a_client_and_breaks_its_tokens_on_request(simulator):
    client_id = f"oidc-client-{secrets.token_hex(4)}"
    setup = httpx.put(
        f"{simulator.url}/_sim/oidc/clients/{client_id}",
        json={"user": "sim-staff", "fault": "bad_signature"},
    )
    assert setup.status_code == 200

    token = _sign_in(simulator, client_id=client_id)

    with pytest.raises(BadSignatureError):
        _verified_claims(simulator, token["id_token"])
    payload = token["id_token"].split(".")[1]
    assert b"sim-staff" in base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))

    httpx.delete(f"{simulator.url}/_sim/oidc/clients/{client_id}").raise_for_status()
    assert (
        _verified_claims(simulator, _sign_in(simulator, client_id=client_id)["id_token"])["sub"]
        == "sim-user"
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_sim/oidc/users/x", {"groups": "aipk-staff"}),
        ("/_sim/oidc/users/x", ["not", "an", "object"]),
        ("/_sim/oidc/clients/c", {"fault": "made_up"}),
        ("/_sim/oidc/clients/c", {"user": "nobody-by-this-name"}),
    ],
)
def test_it_refuses_a_bad_test_setting_by_name(simulator, path, body):
    response = httpx.put(simulator.url + path, json=body)
    assert response.status_code == 400
    assert response.json()["error"]


def test_it_still_gives_provider_flows_an_id_token_with_the_account_email(simulator):
    token = _sign_in(simulator, scope="user:inference", nonce=None)
    claims = _verified_claims(simulator, token["id_token"])
    assert claims["email"] == "sim-user@example.com"
    assert "groups" not in claims
