"""OAuth wire layer: PKCE, token parsing, device flow, request builders, OpenRouter's PKCE variant.

Response bodies and request forms are read from the captured transcripts in
tests/fixtures/wire/, not retyped here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from providers_app.kit.errors import ProviderError
from providers_app.kit.oauth import (
    DASHSCOPE_COMPATIBLE_BASE_URL,
    DEVICE_CODE_GRANT_TYPE,
    OPENROUTER_AUTH_URL,
    OAuthError,
    OAuthTokens,
    PkcePair,
    authorization_code_request,
    authorization_url,
    classify_device_poll,
    device_authorization_request,
    device_token_request,
    new_pkce_pair,
    oauth_error_from_response,
    openrouter_authorization_url,
    openrouter_key_exchange_body,
    parse_device_authorization,
    parse_openrouter_key_exchange,
    parse_token_response,
    qwen_base_url,
    refresh_token_request,
)

NOW = 1_700_000_000.0
QWEN_TOKEN_ENDPOINT = "https://chat.qwen.ai/api/v1/oauth2/token"
QWEN_DEVICE_ENDPOINT = "https://chat.qwen.ai/api/v1/oauth2/device/code"
QWEN_CLIENT_ID = "f0304373b74a44d2b584a3fb70ca9e56"
QWEN_SCOPE = "openid profile email model.completion"
CALLBACK = "https://aipk.example/oauth/callback/openrouter/"


# --------------------------------------------------------------------------- fixture readers


def wire_text(name: str) -> str:
    return (Path(__file__).parents[2] / "fixtures" / "wire" / name).read_text()


def json_blocks(text: str) -> list[tuple[str, dict]]:
    """Every JSON object in a transcript, with the first line of the comment run above it."""
    decoder = json.JSONDecoder()
    blocks, heading, in_comment, pos = [], "", False, 0
    while pos < len(text):
        end = text.find("\n", pos)
        end = len(text) if end == -1 else end
        line = text[pos:end]
        if line.startswith("#"):
            heading = heading if in_comment else line
        in_comment = line.startswith("#")
        if line.startswith("{"):
            obj, stop = decoder.raw_decode(text, pos)
            blocks.append((heading, obj))
            end = text.find("\n", stop)
            end = len(text) if end == -1 else end
        pos = end + 1
    return blocks


def block(name: str, heading_start: str) -> dict:
    """The JSON object under the comment line that starts with ``heading_start``."""
    blocks = json_blocks(wire_text(name))
    found = [obj for heading, obj in blocks if heading.startswith(heading_start)]
    assert len(found) == 1, (heading_start, found)
    return found[0]


def form_after(name: str, request_line: str) -> list[tuple[str, str]]:
    """The form-encoded body of the request that starts with ``request_line``."""
    text = wire_text(name)
    head = text.index(request_line)
    body_start = text.index("\n\n", head) + 2
    line = text[body_start : text.index("\n", body_start)]
    return parse_qsl(line, keep_blank_values=True)


def qwen(heading: str) -> dict:
    return block("qwen_oauth_device_flow.txt", f"## {heading}")


def qwen_form(section: str) -> list[tuple[str, str]]:
    """The form body (the ``grant_type=`` line) of one numbered section of the Qwen transcript."""
    text = wire_text("qwen_oauth_device_flow.txt")
    lines = text[text.index(section) :].splitlines()
    return parse_qsl(next(line for line in lines if line.startswith("grant_type=")))


def poll(status: int, body: dict, interval: float = 2):
    return classify_device_poll(status, body, now=NOW, interval=interval)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# --------------------------------------------------------------------------- PKCE


def test_it_makes_a_verifier_of_43_to_128_unreserved_characters():
    pair = new_pkce_pair()
    assert re.fullmatch(r"[A-Za-z0-9\-._~]{43,128}", pair.verifier)


def test_it_derives_the_challenge_as_unpadded_base64url_of_sha256():
    pair = new_pkce_pair()
    assert pair.method == "S256"
    assert pair.challenge == s256(pair.verifier)
    assert "=" not in pair.challenge


def test_it_makes_a_fresh_verifier_every_time():
    assert len({new_pkce_pair().verifier for _ in range(20)}) == 20


def test_it_never_shows_the_verifier_in_repr():
    pair = new_pkce_pair()
    assert pair.verifier not in repr(pair)
    assert pair.verifier[-4:] in repr(pair)


# ------------------------------------------------------- token responses (Google refresh)


def google_refresh_body() -> dict:
    blocks = json_blocks(wire_text("google_oauth_token_refresh.http"))
    assert len(blocks) == 1
    return blocks[0][1]


def test_it_keeps_the_previous_refresh_token_when_google_sends_none():
    body = google_refresh_body()
    assert "refresh_token" not in body
    tokens = parse_token_response(body, now=NOW, previous_refresh_token="1//old-refresh-token")
    assert tokens.access_token == "1/fFAGRNJru1FTz70BzhT3Zg"
    assert tokens.refresh_token == "1//old-refresh-token"


def test_it_computes_expires_at_from_expires_in():
    tokens = parse_token_response(google_refresh_body(), now=NOW)
    assert tokens.expires_at == NOW + 3920
    assert tokens.token_type == "Bearer"
    assert tokens.scope == "https://www.googleapis.com/auth/drive.metadata.readonly"
    assert tokens.id_token is None
    assert tokens.extra == {}


def test_it_says_when_a_token_is_due_for_refresh():
    tokens = parse_token_response(google_refresh_body(), now=NOW)
    assert not tokens.expires_within(60, now=NOW)
    assert tokens.expires_within(60, now=NOW + 3920 - 30)


def test_it_builds_the_google_refresh_form_with_the_documented_fields():
    documented = dict(form_after("google_oauth_token_refresh.http", "POST /token"))
    url, fields = refresh_token_request(
        "https://oauth2.googleapis.com/token",
        "<CLIENT_ID>",
        "<REFRESH_TOKEN>",
        client_secret="<CLIENT_SECRET>",
    )
    assert url == "https://oauth2.googleapis.com/token"
    assert fields == documented


def test_it_replaces_the_refresh_token_when_the_server_rotates_it():
    tokens = parse_token_response(qwen("3a."), now=NOW, previous_refresh_token="old-refresh-token")
    assert tokens.access_token == "new-access-token"
    assert tokens.refresh_token == "new-refresh-token"
    assert tokens.resource_url == "https://new-endpoint.com"
    assert tokens.expires_at == NOW + 3600


def test_it_accepts_expires_in_sent_as_a_string():
    tokens = parse_token_response({"access_token": "a", "expires_in": "60"}, now=NOW)
    assert tokens.expires_at == NOW + 60


def test_it_keeps_unknown_fields_in_extra():
    body = {"access_token": "a", "refresh_token_expires_in": 604800}
    tokens = parse_token_response(body, now=NOW)
    assert tokens.extra == {"refresh_token_expires_in": 604800}
    assert tokens.expires_at is None


@pytest.mark.parametrize(
    "body", [{}, {"access_token": ""}, {"access_token": None, "token_type": "Bearer"}]
)
def test_it_rejects_a_token_response_without_an_access_token(body):
    with pytest.raises(OAuthError) as caught:
        parse_token_response(body, now=NOW)
    assert caught.value.error == "invalid_response"
    assert not caught.value.permanent


def test_it_raises_the_servers_error_found_in_a_token_body():
    with pytest.raises(OAuthError) as caught:
        parse_token_response(qwen("3b."), now=NOW)
    assert caught.value.error == "invalid_grant"
    assert caught.value.permanent


def test_it_never_shows_tokens_in_repr_or_str():
    tokens = OAuthTokens(
        access_token="ya29.secret-access-AAAA",
        refresh_token="1//secret-refresh-BBBB",
        id_token="eyJ.secret-id-CCCC",
        extra={"api_key": "extra-secret-DDDD"},
    )
    for shown in (repr(tokens), str(tokens), f"{tokens}"):
        for secret in ("secret-access", "secret-refresh", "secret-id", "extra-secret"):
            assert secret not in shown
        assert "AAAA" in shown and "BBBB" in shown and "CCCC" in shown


# --------------------------------------------------------------------------- OAuthError


@pytest.mark.parametrize(
    "code", ["invalid_grant", "invalid_client", "unauthorized_client", "access_denied"]
)
def test_it_marks_errors_that_need_reauthorisation_permanent(code):
    error = oauth_error_from_response(400, {"error": code, "error_description": "nope"})
    assert error.permanent and not error.retryable
    assert error.error == error.code == code
    assert error.description == "nope"


@pytest.mark.parametrize("code", ["temporarily_unavailable", "server_error", "slow_down"])
def test_it_marks_server_side_errors_retryable(code):
    error = oauth_error_from_response(503, {"error": code})
    assert error.retryable and not error.permanent


@pytest.mark.parametrize("code", ["invalid_request", "invalid_scope", "unsupported_grant_type"])
def test_it_marks_request_errors_neither_permanent_nor_retryable(code):
    error = oauth_error_from_response(400, {"error": code})
    assert not error.retryable and not error.permanent


def test_it_reads_qwens_upper_case_error_codes():
    error = oauth_error_from_response(400, qwen("3b."))
    assert error.error == "invalid_grant"
    assert error.permanent
    assert error.description == "The refresh token is invalid"
    assert error.status_code == 400


def test_it_classifies_an_error_reply_without_a_code_by_status():
    assert oauth_error_from_response(502, {}).retryable
    assert oauth_error_from_response(429, None).error == "temporarily_unavailable"
    assert oauth_error_from_response(401, {"detail": "x"}).error == "invalid_client"
    assert oauth_error_from_response(400, {"message": "bad"}).error == "invalid_request"


def test_it_is_a_provider_error_with_the_kit_error_shape():
    error = OAuthError("invalid_grant", "Token has been expired or revoked.", provider="gemini")
    assert isinstance(error, ProviderError)
    assert error.to_dict() == {
        "type": "oauth_error",
        "code": "invalid_grant",
        "message": "invalid_grant: Token has been expired or revoked.",
    }


# --------------------------------------------------------------------------- device flow (Qwen)


def test_it_parses_qwens_device_authorization_with_the_callers_default_interval():
    auth = parse_device_authorization(qwen("1a."), now=NOW, default_interval=2)
    assert auth.device_code == "test-device-code"
    assert auth.user_code == "TEST123"
    assert auth.verification_uri == "https://chat.qwen.ai/device"
    assert auth.verification_uri_complete == "https://chat.qwen.ai/device?code=TEST123"
    assert auth.expires_at == NOW + 1800
    assert auth.interval == 2


def test_it_defaults_the_interval_to_five_seconds_and_prefers_the_servers():
    body = qwen("1a.")
    assert parse_device_authorization(body, now=NOW).interval == 5
    stated = parse_device_authorization({**body, "interval": 7}, now=NOW, default_interval=2)
    assert stated.interval == 7


def test_it_never_shows_the_device_code_in_repr():
    body = {**qwen("1a."), "device_code": "secret-device-code-WXYZ"}
    auth = parse_device_authorization(body, now=NOW)
    assert "secret-device-code" not in repr(auth)
    assert "TEST123" in repr(auth)


def test_it_raises_qwens_device_authorization_error():
    with pytest.raises(OAuthError) as caught:
        parse_device_authorization(qwen("1b."), now=NOW)
    assert caught.value.error == "invalid_request"
    assert caught.value.description == "The request parameters are invalid"
    assert not caught.value.permanent


def test_it_rejects_a_device_authorization_missing_required_fields():
    body = qwen("1a.")
    del body["user_code"]
    with pytest.raises(OAuthError):
        parse_device_authorization(body, now=NOW)


def test_it_builds_the_device_authorization_form_like_qwen_code():
    documented = form_after("qwen_oauth_device_flow.txt", f"POST {QWEN_DEVICE_ENDPOINT}")
    pkce = new_pkce_pair()
    url, fields = device_authorization_request(
        QWEN_DEVICE_ENDPOINT, QWEN_CLIENT_ID, QWEN_SCOPE, pkce
    )
    assert url == QWEN_DEVICE_ENDPOINT
    expected = [(k, pkce.challenge if v == "<CODE_CHALLENGE>" else v) for k, v in documented]
    assert list(fields.items()) == expected


def test_it_builds_the_device_token_poll_form_like_qwen_code():
    documented = qwen_form("## 2. Token polling")
    url, fields = device_token_request(
        QWEN_TOKEN_ENDPOINT, QWEN_CLIENT_ID, "<DEVICE_CODE>", "<CODE_VERIFIER>"
    )
    assert url == QWEN_TOKEN_ENDPOINT
    assert list(fields.items()) == documented
    assert fields["grant_type"] == DEVICE_CODE_GRANT_TYPE


def test_it_builds_the_refresh_form_like_qwen_code():
    documented = qwen_form("## 3. Refresh")
    _, fields = refresh_token_request(QWEN_TOKEN_ENDPOINT, QWEN_CLIENT_ID, "<REFRESH_TOKEN>")
    assert list(fields.items()) == documented


def test_it_keeps_polling_on_authorization_pending_sent_with_http_400():
    result = classify_device_poll(400, {"error": "authorization_pending"}, now=NOW, interval=2)
    assert result.status == "pending"
    assert result.interval == 2
    assert result.tokens is None


def test_it_adds_five_seconds_on_slow_down_sent_with_http_429():
    result = classify_device_poll(429, {"error": "slow_down"}, now=NOW, interval=2)
    assert result.status == "slow_down"
    assert result.interval == 7


def test_it_never_polls_faster_than_an_interval_stated_with_slow_down():
    result = classify_device_poll(400, {"error": "slow_down", "interval": 15}, now=NOW, interval=5)
    assert result.interval == 15


def test_it_stops_when_the_device_code_expired():
    assert poll(400, {"error": "expired_token"}).status == "expired"


def test_it_stops_when_the_user_denied_access():
    assert poll(400, {"error": "access_denied"}).status == "denied"


def test_it_returns_qwens_tokens_on_success():
    result = classify_device_poll(200, qwen("2a."), now=NOW, interval=2)
    assert result.status == "success"
    assert result.tokens.access_token == "valid-access-token"
    assert result.tokens.refresh_token == "valid-refresh-token"
    assert result.tokens.expires_at == NOW + 3600
    assert result.tokens.scope == QWEN_SCOPE


def test_it_classifies_from_the_error_field_not_the_status():
    # a 429 that says "pending" is pending; a 400 that says nothing is an error
    assert poll(429, {"error": "authorization_pending"}).status == "pending"
    with pytest.raises(OAuthError) as caught:
        classify_device_poll(400, {}, now=NOW, interval=2)
    assert caught.value.error == "invalid_request"


def test_it_never_classifies_from_message_text():
    body = {"error": "invalid_request", "error_description": "authorization_pending"}
    with pytest.raises(OAuthError) as caught:
        classify_device_poll(400, body, now=NOW, interval=2)
    assert caught.value.error == "invalid_request"


def test_it_raises_other_poll_errors_with_their_classification():
    with pytest.raises(OAuthError) as caught:
        classify_device_poll(400, qwen("3b."), now=NOW, interval=2)
    assert caught.value.permanent
    with pytest.raises(OAuthError) as caught:
        classify_device_poll(503, {"error": "temporarily_unavailable"}, now=NOW, interval=2)
    assert caught.value.retryable


# --------------------------------------------------------------------------- Qwen base URL


def test_it_uses_dashscope_compatible_mode_without_a_resource_url():
    assert qwen_base_url(None) == DASHSCOPE_COMPATIBLE_BASE_URL
    assert qwen_base_url("") == "https://dashscope.aliyuncs.com/compatible-mode/v1"
    assert DASHSCOPE_COMPATIBLE_BASE_URL in wire_text("qwen_oauth_device_flow.txt")


def test_it_turns_a_bare_resource_host_into_an_https_v1_url():
    assert qwen_base_url("portal.qwen.ai") == "https://portal.qwen.ai/v1"


def test_it_keeps_the_scheme_a_resource_url_already_has():
    assert qwen_base_url(qwen("3a.")["resource_url"]) == "https://new-endpoint.com/v1"


def test_it_does_not_double_the_v1_suffix():
    assert qwen_base_url("https://portal.qwen.ai/v1") == "https://portal.qwen.ai/v1"
    assert qwen_base_url("portal.qwen.ai/v1/") == "https://portal.qwen.ai/v1"


# ------------------------------------------------------------------ authorization code flow


def test_it_builds_an_authorize_url_with_an_s256_challenge():
    pkce = new_pkce_pair()
    url = authorization_url(
        "https://accounts.example/o/oauth2/auth",
        client_id="client-1",
        redirect_uri="http://127.0.0.1:8000/oauth/callback/gemini/",
        scope=["openid", "email"],
        state="state-123",
        pkce=pkce,
        extra_params={"access_type": "offline", "prompt": "consent"},
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "accounts.example")
    assert parts.path == "/o/oauth2/auth"
    assert dict(parse_qsl(parts.query)) == {
        "response_type": "code",
        "client_id": "client-1",
        "redirect_uri": "http://127.0.0.1:8000/oauth/callback/gemini/",
        "scope": "openid email",
        "state": "state-123",
        "code_challenge": s256(pkce.verifier),
        "code_challenge_method": "S256",
        "access_type": "offline",
        "prompt": "consent",
    }
    assert pkce.verifier not in url


def test_it_keeps_a_query_the_authorize_endpoint_already_has():
    url = authorization_url(
        "https://auth.example/authorize?tenant=x",
        client_id="c",
        redirect_uri="https://r/",
        scope="s",
        state="st",
        pkce=new_pkce_pair(),
    )
    assert dict(parse_qsl(urlsplit(url).query))["tenant"] == "x"


def test_it_refuses_extra_params_that_would_override_core_ones():
    with pytest.raises(ValueError, match="state"):
        authorization_url(
            "https://auth.example/authorize",
            client_id="c",
            redirect_uri="https://r/",
            scope="s",
            state="st",
            pkce=new_pkce_pair(),
            extra_params={"state": "forged"},
        )


def test_it_builds_the_authorization_code_form():
    url, fields = authorization_code_request(
        "https://auth.example/token",
        "c",
        "the-code",
        "https://r/",
        "the-verifier",
        client_secret="s",
    )
    assert url == "https://auth.example/token"
    assert fields == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": "https://r/",
        "client_id": "c",
        "code_verifier": "the-verifier",
        "client_secret": "s",
    }
    assert "client_secret" not in authorization_code_request("u", "c", "x", "r", "v")[1]


# --------------------------------------------------------------------------- OpenRouter PKCE


def documented_openrouter_url(comment: str, **values: str) -> str:
    lines = wire_text("openrouter_pkce_flow.txt").splitlines()
    template = lines[lines.index(comment) + 1]
    for placeholder, value in values.items():
        template = template.replace(f"<{placeholder}>", value)
    return template


def same_url(actual: str, documented: str) -> None:
    a, d = urlsplit(actual), urlsplit(documented)
    assert (a.scheme, a.netloc, a.path) == (d.scheme, d.netloc, d.path)
    assert parse_qsl(a.query) == parse_qsl(d.query)


def test_it_builds_openrouters_documented_s256_authorize_url():
    pkce = new_pkce_pair()
    documented = documented_openrouter_url(
        "# With S256 Code Challenge (Recommended)",
        YOUR_SITE_URL=CALLBACK,
        CODE_CHALLENGE=pkce.challenge,
    )
    same_url(openrouter_authorization_url(OPENROUTER_AUTH_URL, CALLBACK, pkce), documented)


def test_it_builds_openrouters_documented_headless_url_with_a_key_label():
    pkce = new_pkce_pair()
    documented = documented_openrouter_url(
        "# Headless (No Callback) - code is shown on screen; code_challenge REQUIRED; "
        "code single-use, expires after 10 minutes",
        CODE_CHALLENGE=pkce.challenge,
        YOUR_APP_NAME="aipk",
    )
    actual = openrouter_authorization_url(OPENROUTER_AUTH_URL, None, pkce, key_label="aipk")
    same_url(actual, documented)


def test_it_builds_the_key_exchange_body_like_the_spec_example():
    documented = block("openrouter_pkce_flow.txt", "# Step 2")
    verifier = documented["code_verifier"]
    pkce = PkcePair(verifier=verifier, challenge=s256(verifier))
    assert openrouter_key_exchange_body(documented["code"], pkce) == documented


def test_it_reads_the_key_and_user_id_from_the_exchange_reply():
    body = block("openrouter_pkce_flow.txt", "# 200 response")
    assert parse_openrouter_key_exchange(200, body) == (
        "sk-or-v1-EXAMPLEKEY0000000000000000000000000000000000000000000000000000",
        "user_2yOPcMpKoQhcd4bVgSMlELRaIah",
    )


def test_it_raises_a_permanent_error_on_the_400_reply():
    body = block("openrouter_pkce_flow.txt", "# 400 response example")
    with pytest.raises(OAuthError) as caught:
        parse_openrouter_key_exchange(400, body)
    error = caught.value
    assert error.error == "invalid_grant" and error.permanent
    assert error.description == "Invalid request parameters"
    assert error.status_code == 400 and error.provider == "openrouter"


def test_it_raises_a_permanent_error_on_a_403_reply():
    # Shape of the spec's 403 example (ForbiddenResponse); the fixture only carries the 400 one.
    body = {"error": {"code": 403, "message": "Only management keys can perform this operation"}}
    with pytest.raises(OAuthError) as caught:
        parse_openrouter_key_exchange(403, body)
    assert caught.value.error == "access_denied" and caught.value.permanent


def test_it_treats_a_500_exchange_reply_as_retryable():
    with pytest.raises(OAuthError) as caught:
        body = {"error": {"code": 500, "message": "Internal Server Error"}}
        parse_openrouter_key_exchange(500, body)
    assert caught.value.retryable and not caught.value.permanent


def test_it_rejects_a_200_exchange_reply_without_a_key():
    with pytest.raises(OAuthError) as caught:
        parse_openrouter_key_exchange(200, {"user_id": "u"})
    assert caught.value.error == "invalid_response"
