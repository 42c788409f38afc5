"""The simulator's fake authorisation server, spoken to directly over loopback HTTP."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from providers_app.kit.oauth import DEVICE_CODE_GRANT_TYPE, authorization_url, new_pkce_pair

REDIRECT = "http://127.0.0.1:1/cb"


def _client_id(prefix: str = "sim-client") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _authorize(simulator, client_id: str, pkce, **extra) -> dict[str, list[str]]:
    url = authorization_url(
        simulator.url + "/oauth/authorize",
        client_id=client_id,
        redirect_uri=REDIRECT,
        scope="openid email",
        state="st-1",
        pkce=pkce,
    )
    if extra:
        url += "&" + "&".join(f"{k}={v}" for k, v in extra.items())
    response = httpx.get(url, follow_redirects=False)
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(REDIRECT)
    return parse_qs(urlsplit(location).query)


def _code_grant(simulator, client_id, code, verifier, *, secret=None, path="/oauth/token"):
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": client_id,
        "code_verifier": verifier,
    }
    if secret:
        form["client_secret"] = secret
    return httpx.post(simulator.url + path, data=form)


def _refresh(simulator, client_id, refresh_token, query=""):
    return httpx.post(
        simulator.url + "/oauth/token" + query,
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
        },
    )


def _calls(simulator, client_id: str) -> dict[str, int]:
    return httpx.get(simulator.url + "/_sim/oauth/calls", params={"client_id": client_id}).json()


def test_it_approves_and_exchanges_a_code_with_its_verifier(simulator):
    client_id, pkce = _client_id(), new_pkce_pair()
    params = _authorize(simulator, client_id, pkce)
    assert params["state"] == ["st-1"]
    reply = _code_grant(simulator, client_id, params["code"][0], pkce.verifier)
    assert reply.status_code == 200
    body = reply.json()
    assert body["access_token"].startswith("sim-at-")
    assert body["refresh_token"].startswith("sim-rt-")
    assert body["expires_in"] == 3600
    assert body["scope"] == "openid email"
    # the issued token is accepted by the provider routes
    chat = httpx.post(
        simulator.base_url("openai") + "/chat/completions",
        headers={"Authorization": f"Bearer {body['access_token']}"},
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.status_code == 200


def test_it_rejects_a_wrong_verifier_and_a_reused_code(simulator):
    client_id, pkce = _client_id(), new_pkce_pair()
    code = _authorize(simulator, client_id, pkce)["code"][0]
    wrong = _code_grant(simulator, client_id, code, new_pkce_pair().verifier)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    # the code was spent by the failed attempt: single use
    again = _code_grant(simulator, client_id, code, pkce.verifier)
    assert again.json()["error"] == "invalid_grant"


def test_it_denies_on_request(simulator):
    params = _authorize(simulator, _client_id(), new_pkce_pair(), deny=1)
    assert params["error"] == ["access_denied"] and params["state"] == ["st-1"]
    assert "code" not in _authorize(simulator, _client_id("sim-deny"), new_pkce_pair())


def test_it_requires_the_secret_of_a_confidential_client(simulator):
    client_id, pkce = _client_id("confidential"), new_pkce_pair()
    code = _authorize(simulator, client_id, pkce)["code"][0]
    no_secret = _code_grant(simulator, client_id, code, pkce.verifier)
    assert no_secret.status_code == 401 and no_secret.json()["error"] == "invalid_client"
    code = _authorize(simulator, client_id, pkce)["code"][0]
    ok = _code_grant(simulator, client_id, code, pkce.verifier, secret=f"secret-{client_id}")
    assert ok.status_code == 200


def test_it_rotates_refresh_tokens_and_rejects_a_used_one(simulator):
    client_id, pkce = _client_id(), new_pkce_pair()
    code = _authorize(simulator, client_id, pkce, expires_in=1)["code"][0]
    first = _code_grant(simulator, client_id, code, pkce.verifier).json()
    assert first["expires_in"] == 1
    second = _refresh(simulator, client_id, first["refresh_token"]).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["expires_in"] == 3600
    reused = _refresh(simulator, client_id, first["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert _calls(simulator, client_id) == {"authorization_code": 1, "refresh_token": 2}


def test_it_keeps_refresh_tokens_without_rotation(simulator):
    client_id, pkce = _client_id(), new_pkce_pair()
    code = _authorize(simulator, client_id, pkce)["code"][0]
    first = _code_grant(simulator, client_id, code, pkce.verifier).json()
    for _ in range(2):
        reply = _refresh(
            simulator, client_id, first["refresh_token"], "?rotate=0&expires_in=5"
        ).json()
        assert "refresh_token" not in reply and reply["expires_in"] == 5


@pytest.mark.parametrize("outcome, error", [("deny", "access_denied"), ("expire", "expired_token")])
def test_it_runs_the_device_flow_to_the_chosen_outcome(simulator, outcome, error):
    client_id, pkce = _client_id(), new_pkce_pair()
    start = httpx.post(
        simulator.url
        + f"/qwen-oauth/api/v1/oauth2/device/code?interval=0&pending_polls=1&outcome={outcome}",
        data={
            "client_id": client_id,
            "scope": "openid",
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
        },
    ).json()
    assert {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
    } <= set(start)
    assert "interval" not in start  # Qwen's shape
    assert httpx.get(start["verification_uri_complete"]).status_code == 200

    def poll():
        return httpx.post(
            simulator.url + "/qwen-oauth/api/v1/oauth2/token",
            data={
                "grant_type": DEVICE_CODE_GRANT_TYPE,
                "client_id": client_id,
                "device_code": start["device_code"],
                "code_verifier": pkce.verifier,
            },
        )

    pending = poll()
    assert pending.status_code == 400 and pending.json()["error"] == "authorization_pending"
    assert poll().json()["error"] == error


def test_it_answers_slow_down_then_tokens_with_a_resource_url(simulator):
    client_id = _client_id()
    start = httpx.post(
        simulator.url + "/oauth/device/code?interval=0&pending_polls=0&slow_down_polls=1",
        data={"client_id": client_id, "scope": "openid"},
    ).json()
    assert start["interval"] == 0
    form = {
        "grant_type": DEVICE_CODE_GRANT_TYPE,
        "client_id": client_id,
        "device_code": start["device_code"],
    }
    slow = httpx.post(simulator.url + "/oauth/token", data=form)
    assert slow.status_code == 429 and slow.json()["error"] == "slow_down"
    tokens = httpx.post(simulator.url + "/qwen-oauth/api/v1/oauth2/token", data=form).json()
    assert tokens["resource_url"] == simulator.url + "/qwen" and tokens["refresh_token"]
    again = httpx.post(simulator.url + "/oauth/token", data=form)
    assert again.json()["error"] == "invalid_grant"  # a device code gives tokens once


def test_it_answers_slow_down_to_polls_faster_than_the_interval(simulator):
    client_id = _client_id()
    start = httpx.post(
        simulator.url + "/oauth/device/code?interval=30&pending_polls=5",
        data={"client_id": client_id, "scope": "openid"},
    ).json()
    form = {
        "grant_type": DEVICE_CODE_GRANT_TYPE,
        "client_id": client_id,
        "device_code": start["device_code"],
    }
    assert (
        httpx.post(simulator.url + "/oauth/token", data=form).json()["error"]
        == "authorization_pending"
    )
    assert httpx.post(simulator.url + "/oauth/token", data=form).json()["error"] == "slow_down"


def _page_approved_device(simulator, client_id: str) -> tuple[dict, dict]:
    start = httpx.post(
        simulator.url + "/qwen-oauth/api/v1/oauth2/device/code?approval=page&interval=0",
        data={"client_id": client_id, "scope": "openid model.completion"},
    ).json()
    form = {
        "grant_type": DEVICE_CODE_GRANT_TYPE,
        "client_id": client_id,
        "device_code": start["device_code"],
    }
    return start, form


def _decide(simulator, user_code: str, decision: str) -> httpx.Response:
    return httpx.post(
        simulator.url + "/oauth/device", data={"user_code": user_code, "decision": decision}
    )


def test_it_keeps_a_page_approved_device_code_pending_until_the_user_approves(simulator):
    start, form = _page_approved_device(simulator, _client_id())
    token_url = simulator.url + "/qwen-oauth/api/v1/oauth2/token"
    for _ in range(5):  # more polls than any scripted pending_polls default
        assert httpx.post(token_url, data=form).json()["error"] == "authorization_pending"

    page = httpx.get(start["verification_uri_complete"])
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert start["user_code"] in page.text and "model.completion" in page.text
    assert 'name="decision" value="approve"' in page.text

    decided = _decide(simulator, start["user_code"].lower(), "approve")  # typed by hand
    assert decided.status_code == 200 and "approved" in decided.text
    tokens = httpx.post(token_url, data=form).json()
    assert tokens["access_token"].startswith("sim-at-") and tokens["resource_url"]
    # used: the page no longer knows the code, and it gives tokens once
    assert httpx.get(start["verification_uri_complete"]).status_code == 404
    assert httpx.post(token_url, data=form).json()["error"] == "invalid_grant"


def test_it_answers_access_denied_when_the_user_denies_on_the_page(simulator):
    start, form = _page_approved_device(simulator, _client_id())

    assert _decide(simulator, start["user_code"], "deny").status_code == 200

    denied = httpx.post(simulator.url + "/oauth/token", data=form)
    assert denied.status_code == 400 and denied.json()["error"] == "access_denied"


def test_it_refuses_unknown_codes_and_decisions_on_the_device_page(simulator):
    start, _ = _page_approved_device(simulator, _client_id())

    assert _decide(simulator, "NOPE1234", "approve").status_code == 404
    assert httpx.get(simulator.url + "/oauth/device", params={"code": "<b>x"}).status_code == 404
    assert "<b>x" not in httpx.get(simulator.url + "/oauth/device?code=<b>x").text
    assert _decide(simulator, start["user_code"], "maybe").status_code == 400
    blank = httpx.get(simulator.url + "/oauth/device")  # no code: a form to type it in
    assert blank.status_code == 200 and 'name="user_code"' in blank.text
    scripted = httpx.post(
        simulator.url + "/oauth/device/code", data={"client_id": _client_id()}
    ).json()
    page = httpx.get(scripted["verification_uri_complete"])
    assert "follows the device-code knobs" in page.text
    assert _decide(simulator, scripted["user_code"], "approve").status_code == 404
    bad = httpx.post(simulator.url + "/oauth/device/code?approval=later", data={"client_id": "c"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"


def test_it_exchanges_an_openrouter_code_for_a_key(simulator):
    pkce = new_pkce_pair()
    callback = "http://127.0.0.1:1/cb?state=abc"
    redirect = httpx.get(
        simulator.url + "/openrouter/auth",
        params={
            "callback_url": callback,
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
        },
    )
    assert redirect.status_code == 302
    params = parse_qs(urlsplit(redirect.headers["location"]).query)
    assert params["state"] == ["abc"]
    url = simulator.url + "/openrouter/api/v1/auth/keys"
    body = {
        "code": params["code"][0],
        "code_verifier": pkce.verifier,
        "code_challenge_method": "S256",
    }
    reply = httpx.post(url, json=body)
    assert reply.status_code == 200 and reply.json()["key"].startswith("sk-or-v1-")
    again = httpx.post(url, json=body)
    assert again.status_code == 400 and again.json()["error"]["code"] == 400
