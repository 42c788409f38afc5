"""A fake OAuth 2.0 authorisation server, so every OAuth flow runs end to end over HTTP.

| route | what it fakes |
|---|---|
| GET  /oauth/authorize | RFC 6749 §4.1 authorize page with PKCE (RFC 7636): approves at once |
| POST /oauth/token | token endpoint: authorization_code, refresh_token (rotating), device_code |
| POST /oauth/device/code | RFC 8628 device authorisation |
| GET  /oauth/device | the verification page named in device replies (approve / deny form) |
| POST /oauth/device | that page's answer: approves or denies a user code |
| POST /qwen-oauth/api/v1/oauth2/device/code, /token | the same, Qwen-shaped (+ resource_url) |
| GET  /openrouter/auth | OpenRouter's PKCE authorize page |
| POST /openrouter/api/v1/auth/keys | OpenRouter's code → API key exchange |
| GET / DELETE /_sim/oauth/calls | per-grant call counters (for "refreshed exactly once") |
| GET /.well-known/openid-configuration | OIDC discovery (issuer: this root URL) |
| GET /oauth/jwks | the RS256 public key id_tokens are signed with (generated at start) |
| GET/POST /oauth/userinfo | OIDC userinfo for a Bearer access token |
| PUT/GET /_sim/oidc/users/{sub} | the test users: email, name, groups |
| PUT/DELETE /_sim/oidc/clients/{client_id} | who signs in for a client; id_token faults |

Knobs are query parameters, so they can ride on the endpoint URLs an admin
configures (``Provider.oauth_token_url = <sim>/oauth/token?expires_in=1``):

- authorize: ``deny=1`` (or a client id starting with ``sim-deny``) redirects
  with ``error=access_denied``; ``expires_in=<s>`` sets the lifetime of the
  access token issued for that code.
- token: ``expires_in=<s>`` (default 3600) overrides the lifetime for this call;
  ``rotate=0`` makes refresh replies carry no new refresh token (Google style:
  the old one stays valid). By default refresh tokens rotate and a used one
  is rejected with ``invalid_grant``.
- device code: ``interval=<s>`` (advertised, default 1), ``pending_polls=<n>``
  (default 2) polls answered authorization_pending, then ``slow_down_polls=<n>``
  (default 0) answered slow_down, then ``outcome`` = ``approve`` (default),
  ``deny`` (access_denied) or ``expire`` (expired_token). A poll sooner than
  the current interval after the previous one also gets slow_down (RFC 8628
  §3.5) and raises that interval by 5 s (scripted slow_downs do not).
  ``approval=page`` instead behaves like the real provider: the code stays
  authorization_pending until someone approves (or denies) it on the
  verification page, GET /oauth/device?code=<user code>; the other knobs are
  then ignored except ``interval``. The seeded demo's Qwen provider uses it.

Clients whose id starts with ``confidential-`` must authenticate with the
secret ``secret-<client id>`` (form field or HTTP Basic); other clients are
public. State lives in this one simulator process, in bounded maps (oldest
entries dropped), so it is lost on restart.

OpenID Connect: a code grant whose scope holds ``openid`` returns an RS256-signed
id_token (iss, aud, sub, iat, exp, nonce when the authorize request sent one,
at_hash, email, email_verified, name, preferred_username, groups) for the user who
"signed in": ``login_hint=<sub>`` on the authorize URL, else the user set for the
client with ``PUT /_sim/oidc/clients/{client_id}``, else ``sim-user``. The same
client setting can carry a ``fault`` that breaks the id_tokens issued to that client
the way a relying party must refuse (see ``ID_TOKEN_FAULTS``). Other grants keep an
id_token with the account's email only, now signed too.

One module because it is one concept: a single authorisation server whose
grants (code, refresh, device, OpenRouter's exchange) share one state and one
set of client and PKCE checks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from html import escape
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web
from joserfc import jwt
from joserfc.jwk import RSAKey

MAX_ENTRIES = 10_000
CODE_TTL_S = 600
DEFAULT_EXPIRES_IN = 3600
DEVICE_CODE_TTL_S = 1800
SLOW_DOWN_STEP_S = 5.0
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SIM_USER_EMAIL = "sim-user@example.com"
DEFAULT_SUB = "sim-user"
ID_TOKEN_ALG = "RS256"
# The fixed users every simulator starts with (PUT /_sim/oidc/users/{sub} adds or replaces).
DEFAULT_USERS: dict[str, dict] = {
    "sim-user": {"email": SIM_USER_EMAIL, "name": "Sim User", "groups": []},
    "sim-staff": {"email": "sim-staff@example.com", "name": "Sim Staff", "groups": ["aipk-staff"]},
}
# What a client's id_tokens can be made to get wrong, each one a check a relying party owes.
ID_TOKEN_FAULTS = frozenset(
    {
        "bad_signature",  # signed, then its payload swapped: the signature no longer matches
        "wrong_nonce",  # a nonce other than the one the authorize request sent
        "wrong_issuer",  # iss of another server
        "wrong_audience",  # aud of another client (azp of this one)
        "expired",  # exp an hour ago
        "unknown_key",  # signed with a key the JWKS does not publish
    }
)


class _Bounded(OrderedDict):
    """An insertion-ordered map that drops its oldest entries past MAX_ENTRIES."""

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        while len(self) > MAX_ENTRIES:
            self.popitem(last=False)


@dataclass(slots=True)
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    method: str
    scope: str
    expires_in: int | None
    created: float
    nonce: str | None = None
    sub: str = DEFAULT_SUB


@dataclass(slots=True)
class _Refresh:
    client_id: str
    scope: str
    used: bool = False
    sub: str = DEFAULT_SUB


@dataclass(slots=True)
class _Client:
    """Test settings of one client id: who approves its authorize requests, what breaks."""

    user: str = DEFAULT_SUB
    fault: str | None = None


@dataclass(slots=True)
class _Device:
    client_id: str
    challenge: str
    scope: str
    interval: float
    pending_polls: int
    slow_down_polls: int
    outcome: str
    expires_at: float
    user_code: str = ""
    on_page: bool = False  # approval=page: pending until the verification page answers
    approved: bool | None = None
    polls: int = 0
    last_poll: float | None = None
    done: bool = False


@dataclass
class OAuthServerState:
    codes: _Bounded = field(default_factory=_Bounded)
    refresh_tokens: _Bounded = field(default_factory=_Bounded)
    devices: _Bounded = field(default_factory=_Bounded)
    device_codes_by_user_code: _Bounded = field(default_factory=_Bounded)
    openrouter_codes: _Bounded = field(default_factory=_Bounded)
    # (endpoint or grant type, client id) -> calls
    calls: Counter = field(default_factory=Counter)
    # the id_token signing key: new at every start, so no private key is ever on disk
    signing_key: RSAKey = field(default_factory=lambda: _new_key())
    users: dict = field(default_factory=lambda: {k: dict(v) for k, v in DEFAULT_USERS.items()})
    clients: _Bounded = field(default_factory=_Bounded)
    # access token -> (sub, scope) for the userinfo endpoint
    access_tokens: _Bounded = field(default_factory=_Bounded)


def _new_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"use": "sig", "alg": ID_TOKEN_ALG}, auto_kid=True)


OAUTH_STATE = web.AppKey("sim_oauth_state", OAuthServerState)


def _state(request: web.Request) -> OAuthServerState:
    return request.app[OAUTH_STATE]


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _verifier_ok(challenge: str, method: str, verifier: str | None) -> bool:
    if not verifier:
        return False
    if method == "plain":
        return secrets.compare_digest(challenge, verifier)
    return secrets.compare_digest(challenge, _s256(verifier))


def _int_knob(request: web.Request, name: str, default: int | None) -> int | None:
    value = request.query.get(name)
    if value is None:
        return default
    try:
        return max(0, int(float(value)))
    except ValueError:
        return default


def _add_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _oauth_error(error: str, description: str, status: int = 400) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def _issuer(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _id_token(
    request: web.Request,
    client_id: str,
    *,
    sub: str,
    scope: str,
    access_token: str,
    nonce: str | None,
) -> str:
    """An RS256-signed id_token. With ``openid`` in the scope it is an OIDC Core §2
    token for ``sub``; otherwise the provider flows' display-only token (email)."""
    state = _state(request)
    now = int(time.time())
    user = state.users.get(sub) or DEFAULT_USERS[DEFAULT_SUB]
    claims: dict = {
        "iss": _issuer(request),
        "aud": client_id,
        "sub": sub,
        "iat": now,
        "exp": now + DEFAULT_EXPIRES_IN,
        "email": user["email"],
    }
    if "openid" in scope.split():
        # OIDC Core §3.1.3.6: the left half of the access token's SHA-256
        digest = hashlib.sha256(access_token.encode("ascii")).digest()
        claims |= {
            "at_hash": _b64url(digest[: len(digest) // 2]),
            "email_verified": True,
            "name": user["name"],
            "preferred_username": sub,
            "groups": list(user["groups"]),
        }
        if nonce:
            claims["nonce"] = nonce
    client = state.clients.get(client_id)
    fault = client.fault if client is not None else None
    key = state.signing_key
    if fault == "wrong_nonce":
        claims["nonce"] = "not-the-nonce-" + secrets.token_urlsafe(8)
    elif fault == "wrong_issuer":
        claims["iss"] = "https://issuer.invalid"
    elif fault == "wrong_audience":
        # the subtle one: aud names another client while azp names this one
        claims["aud"], claims["azp"] = ["another-client"], client_id
    elif fault == "expired":
        claims["iat"], claims["exp"] = now - 2 * DEFAULT_EXPIRES_IN, now - DEFAULT_EXPIRES_IN
    elif fault == "unknown_key":
        key = _new_key()
    header = {"alg": ID_TOKEN_ALG, "typ": "JWT", "kid": key.kid}
    signed = jwt.encode(header, claims, key)
    if fault == "bad_signature":
        head, _payload, signature = signed.split(".")
        forged = dict(claims, groups=[*claims.get("groups", []), "forged-group"])
        signed = f"{head}.{_b64url(json.dumps(forged).encode())}.{signature}"
    return signed


def _client_ok(client_id: str, secret: str | None) -> bool:
    if not client_id:
        return False
    if client_id.startswith("confidential-"):
        return secret is not None and secrets.compare_digest(secret, f"secret-{client_id}")
    return True


def _client_credentials(request: web.Request, form) -> tuple[str, str | None]:
    """client_secret_post or client_secret_basic (RFC 6749 §2.3.1)."""
    client_id = form.get("client_id", "")
    secret = form.get("client_secret")
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(auth[6:].strip()).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        basic_id, _, basic_secret = decoded.partition(":")
        client_id = client_id or basic_id
        secret = secret or basic_secret
    return client_id, secret


# --------------------------------------------------------------------------- authorize


async def authorize(request: web.Request) -> web.Response:
    q = request.query
    redirect_uri = q.get("redirect_uri", "")
    if not redirect_uri.startswith(("http://", "https://")):
        return web.Response(status=400, text="redirect_uri is missing or not an http(s) URL")
    client_id = q.get("client_id", "")
    oauth_state = q.get("state", "")
    back: dict[str, str] = {}
    if q.get("deny") == "1" or client_id.startswith("sim-deny"):
        back = {"error": "access_denied", "error_description": "The user denied access"}
    elif q.get("response_type") != "code" or not client_id:
        back = {
            "error": "invalid_request",
            "error_description": "response_type=code and client_id are required",
        }
    elif not q.get("code_challenge") or q.get("code_challenge_method", "plain") not in (
        "S256",
        "plain",
    ):
        back = {
            "error": "invalid_request",
            "error_description": "a PKCE code_challenge is required",
        }
    else:
        client = _state(request).clients.get(client_id) or _Client()
        code = "sim-code-" + secrets.token_urlsafe(24)
        _state(request).codes[code] = _Code(
            client_id=client_id,
            redirect_uri=redirect_uri,
            challenge=q["code_challenge"],
            method=q.get("code_challenge_method", "plain"),
            scope=q.get("scope", ""),
            expires_in=_int_knob(request, "expires_in", None),
            created=time.time(),
            nonce=q.get("nonce") or None,
            sub=q.get("login_hint") or client.user,
        )
        back = {"code": code}
    if oauth_state:
        back["state"] = oauth_state
    raise web.HTTPFound(_add_query(redirect_uri, back))


# --------------------------------------------------------------------------- token


def _issue(
    request: web.Request,
    client_id: str,
    scope: str,
    expires_in: int,
    *,
    refresh: bool = True,
    qwen: bool = False,
    sub: str = DEFAULT_SUB,
    nonce: str | None = None,
) -> dict:
    access_token = "sim-at-" + secrets.token_urlsafe(24)
    _state(request).access_tokens[access_token] = (sub, scope)
    body: dict = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
    }
    if scope:
        body["scope"] = scope
    if refresh:
        refresh_token = "sim-rt-" + secrets.token_urlsafe(24)
        _state(request).refresh_tokens[refresh_token] = _Refresh(
            client_id=client_id, scope=scope, sub=sub
        )
        body["refresh_token"] = refresh_token
    if qwen:
        # Qwen's per-account API host; pointed back at this simulator's Qwen routes.
        body["resource_url"] = f"{request.scheme}://{request.host}/qwen"
    else:
        body["id_token"] = _id_token(
            request, client_id, sub=sub, scope=scope, access_token=access_token, nonce=nonce
        )
    return body


async def token(request: web.Request) -> web.Response:
    return await _token(request, qwen=False)


async def qwen_token(request: web.Request) -> web.Response:
    return await _token(request, qwen=True)


async def _token(request: web.Request, *, qwen: bool) -> web.Response:
    form = await request.post()
    grant = form.get("grant_type", "")
    client_id, secret = _client_credentials(request, form)
    _state(request).calls[(grant or "missing", client_id)] += 1
    if not _client_ok(client_id, secret):
        return _oauth_error("invalid_client", "client authentication failed", status=401)
    expires_knob = _int_knob(request, "expires_in", None)
    if grant == "authorization_code":
        return _code_grant(request, form, client_id, expires_knob, qwen=qwen)
    if grant == "refresh_token":
        return _refresh_grant(request, form, client_id, expires_knob, qwen=qwen)
    if grant == DEVICE_GRANT:
        return _device_grant(request, form, client_id, expires_knob, qwen=qwen)
    return _oauth_error("unsupported_grant_type", f"grant_type {grant!r} is not supported")


def _code_grant(request, form, client_id, expires_knob, *, qwen: bool) -> web.Response:
    code = _state(request).codes.pop(form.get("code", ""), None)  # single use
    if code is None or time.time() - code.created > CODE_TTL_S:
        return _oauth_error("invalid_grant", "the code is unknown, used or expired")
    if code.client_id != client_id:
        return _oauth_error("invalid_grant", "the code was issued to another client")
    if form.get("redirect_uri", "") != code.redirect_uri:
        return _oauth_error("invalid_grant", "redirect_uri does not match the authorize request")
    if not _verifier_ok(code.challenge, code.method, form.get("code_verifier")):
        return _oauth_error("invalid_grant", "code_verifier does not match the code_challenge")
    expires_in = expires_knob if expires_knob is not None else code.expires_in
    return web.json_response(
        _issue(
            request,
            client_id,
            code.scope,
            DEFAULT_EXPIRES_IN if expires_in is None else expires_in,
            qwen=qwen,
            sub=code.sub,
            nonce=code.nonce,
        )
    )


def _refresh_grant(request, form, client_id, expires_knob, *, qwen: bool) -> web.Response:
    refresh = _state(request).refresh_tokens.get(form.get("refresh_token", ""))
    if refresh is None or refresh.used or refresh.client_id != client_id:
        return _oauth_error("invalid_grant", "the refresh token is invalid, used or revoked")
    rotate = request.query.get("rotate", "1") != "0"
    if rotate:
        refresh.used = True
    expires_in = DEFAULT_EXPIRES_IN if expires_knob is None else expires_knob
    return web.json_response(
        _issue(
            request,
            client_id,
            refresh.scope,
            expires_in,
            refresh=rotate,
            qwen=qwen,
            sub=refresh.sub,
        )
    )


def _device_grant(request, form, client_id, expires_knob, *, qwen: bool) -> web.Response:
    device = _state(request).devices.get(form.get("device_code", ""))
    if device is None or device.client_id != client_id or device.done:
        return _oauth_error("invalid_grant", "the device code is unknown or used")
    now = time.time()
    if device.challenge and not _verifier_ok(device.challenge, "S256", form.get("code_verifier")):
        return _oauth_error("invalid_grant", "code_verifier does not match the code_challenge")
    if now >= device.expires_at:
        return _oauth_error("expired_token", "the device code has expired")
    too_fast = device.last_poll is not None and now - device.last_poll < device.interval
    device.last_poll = now
    device.polls += 1
    if too_fast:
        device.interval += SLOW_DOWN_STEP_S
        return _oauth_error("slow_down", "polling too fast", status=429)
    if device.on_page:
        return _device_page_outcome(request, device, client_id, expires_knob, qwen=qwen)
    if device.polls <= device.pending_polls:
        return _oauth_error("authorization_pending", "the user has not approved yet")
    if device.polls <= device.pending_polls + device.slow_down_polls:
        # scripted: the enforced interval stays, so clients with a fake clock can go on
        return _oauth_error("slow_down", "polling too fast", status=429)
    device.done = True
    if device.outcome == "deny":
        return _oauth_error("access_denied", "the user denied access")
    if device.outcome == "expire":
        return _oauth_error("expired_token", "the device code has expired")
    expires_in = DEFAULT_EXPIRES_IN if expires_knob is None else expires_knob
    return web.json_response(_issue(request, client_id, device.scope, expires_in, qwen=qwen))


def _device_page_outcome(request, device, client_id, expires_knob, *, qwen: bool):
    if device.approved is None:
        return _oauth_error("authorization_pending", "the user has not approved yet")
    device.done = True
    if not device.approved:
        return _oauth_error("access_denied", "the user denied access")
    expires_in = DEFAULT_EXPIRES_IN if expires_knob is None else expires_knob
    return web.json_response(_issue(request, client_id, device.scope, expires_in, qwen=qwen))


# --------------------------------------------------------------------------- device authorisation


async def device_code(request: web.Request) -> web.Response:
    return await _device_code(request, qwen=False)


async def qwen_device_code(request: web.Request) -> web.Response:
    return await _device_code(request, qwen=True)


async def _device_code(request: web.Request, *, qwen: bool) -> web.Response:
    form = await request.post()
    client_id, secret = _client_credentials(request, form)
    _state(request).calls[("device_authorization", client_id)] += 1
    if not _client_ok(client_id, secret):
        return _oauth_error("invalid_client", "client authentication failed", status=401)
    challenge = form.get("code_challenge", "")
    if challenge and form.get("code_challenge_method", "S256") != "S256":
        return _oauth_error("invalid_request", "only S256 is supported")
    outcome = request.query.get("outcome", "approve")
    if outcome not in ("approve", "deny", "expire"):
        return _oauth_error("invalid_request", "outcome must be approve, deny or expire")
    approval = request.query.get("approval", "auto")
    if approval not in ("auto", "page"):
        return _oauth_error("invalid_request", "approval must be auto or page")
    interval = float(_int_knob(request, "interval", 1) or 0)
    device_code_value = "sim-dc-" + secrets.token_urlsafe(24)
    user_code = secrets.token_hex(4).upper()
    _state(request).devices[device_code_value] = _Device(
        client_id=client_id,
        challenge=str(challenge),
        scope=str(form.get("scope", "")),
        interval=interval,
        pending_polls=_int_knob(request, "pending_polls", 2) or 0,
        slow_down_polls=_int_knob(request, "slow_down_polls", 0) or 0,
        outcome=outcome,
        expires_at=time.time() + DEVICE_CODE_TTL_S,
        user_code=user_code,
        on_page=approval == "page",
    )
    _state(request).device_codes_by_user_code[user_code] = device_code_value
    verification_uri = f"{request.scheme}://{request.host}/oauth/device"
    body = {
        "device_code": device_code_value,
        "user_code": user_code,
        "verification_uri": verification_uri,
        "verification_uri_complete": f"{verification_uri}?code={user_code}",
        "expires_in": DEVICE_CODE_TTL_S,
    }
    if not qwen:  # Qwen's reply has no interval (its client polls every 2 s)
        body["interval"] = interval
    return web.json_response(body)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Simulated device verification</title></head>
<body><main>
<h1>Simulated device verification</h1>
{body}
</main></body></html>
"""


def _page(body: str, *, status: int = 200) -> web.Response:
    return web.Response(text=_PAGE.format(body=body), content_type="text/html", status=status)


def _unknown_code(user_code: str) -> web.Response:
    return _page(f"<p>The code {escape(user_code)} is unknown, used or expired.</p>", status=404)


def _pending_device(request: web.Request, user_code: str) -> _Device | None:
    state = _state(request)
    device = state.devices.get(state.device_codes_by_user_code.get(user_code.strip().upper(), ""))
    if device is None or device.done or time.time() >= device.expires_at:
        return None
    return device


async def device_page(request: web.Request) -> web.Response:
    """The verification page a device reply names, like chat.qwen.ai's: shows the code and
    asks to approve or deny it. A code made without ``approval=page`` follows its knobs;
    its page says so. No login: the simulator has one user (sim-user@example.com)."""
    code = request.query.get("code", "")
    device = _pending_device(request, code) if code else None
    if code and device is None:
        return _unknown_code(code)
    if device is not None and not device.on_page:
        return _page(
            f"<p>Code {escape(device.user_code)}: approval follows the device-code knobs.</p>"
        )
    prompt = (
        f'<input type="hidden" name="user_code" value="{escape(device.user_code)}">'
        f"<p>Code <strong>{escape(device.user_code)}</strong> asks for access to the account "
        f"of {SIM_USER_EMAIL} (scope: {escape(device.scope) or 'none'}).</p>"
        if device is not None
        else '<p><label>Code <input name="user_code" autocomplete="off" required></label></p>'
    )
    return _page(
        f'<form method="post" action="/oauth/device">{prompt}'
        '<button name="decision" value="approve">Approve</button> '
        '<button name="decision" value="deny">Deny</button></form>'
    )


async def device_decide(request: web.Request) -> web.Response:
    form = await request.post()
    user_code = str(form.get("user_code", ""))
    decision = form.get("decision")
    if decision not in ("approve", "deny"):
        return _page("<p>decision must be approve or deny.</p>", status=400)
    device = _pending_device(request, user_code)
    if device is None or not device.on_page:
        return _unknown_code(user_code)
    device.approved = decision == "approve"
    verdict = "approved" if device.approved else "denied"
    return _page(f"<p>Device {verdict}. You can close this page and return to your device.</p>")


# --------------------------------------------------------------------------- OpenRouter


async def openrouter_authorize(request: web.Request) -> web.Response:
    q = request.query
    callback_url = q.get("callback_url", "")
    if not callback_url.startswith(("http://", "https://")):
        return web.Response(
            status=400, text="callback_url is required (headless mode is not simulated)"
        )
    if q.get("deny") == "1":
        raise web.HTTPFound(_add_query(callback_url, {"error": "access_denied"}))
    if not q.get("code_challenge"):
        return web.Response(status=400, text="code_challenge is required")
    code = "sim-or-code-" + secrets.token_urlsafe(24)
    _state(request).openrouter_codes[code] = (
        q["code_challenge"],
        q.get("code_challenge_method", "plain"),
        time.time(),
    )
    raise web.HTTPFound(_add_query(callback_url, {"code": code}))


def _openrouter_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message}}, status=status)


async def openrouter_key_exchange(request: web.Request) -> web.Response:
    _state(request).calls[("openrouter_key_exchange", "")] += 1
    try:
        body = json.loads(await request.read() or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("code"), str):
        return _openrouter_error(400, "Invalid request parameters")
    entry = _state(request).openrouter_codes.pop(body["code"], None)  # single use
    if entry is None or time.time() - entry[2] > CODE_TTL_S:
        return _openrouter_error(400, "Invalid code")
    challenge, method, _created = entry
    if not _verifier_ok(challenge, method, body.get("code_verifier")):
        return _openrouter_error(403, "Invalid code_verifier")
    return web.json_response(
        {
            "key": "sk-or-v1-sim" + secrets.token_hex(26),
            "user_id": "user_sim_" + secrets.token_hex(4),
        }
    )


# --------------------------------------------------------------------------- OpenID Connect


async def discovery(request: web.Request) -> web.Response:
    """OIDC Discovery 1.0 §3, so a relying party configures itself from the issuer URL."""
    issuer = _issuer(request)
    return web.json_response(
        {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/oauth/authorize",
            "token_endpoint": f"{issuer}/oauth/token",
            "userinfo_endpoint": f"{issuer}/oauth/userinfo",
            "jwks_uri": f"{issuer}/oauth/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_GRANT],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ID_TOKEN_ALG],
            "scopes_supported": ["openid", "email", "profile", "groups"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "code_challenge_methods_supported": ["S256", "plain"],
            "claims_supported": [
                "iss",
                "aud",
                "sub",
                "iat",
                "exp",
                "nonce",
                "at_hash",
                "email",
                "email_verified",
                "name",
                "preferred_username",
                "groups",
            ],
        }
    )


async def jwks(request: web.Request) -> web.Response:
    return web.json_response({"keys": [_state(request).signing_key.as_dict(private=False)]})


async def userinfo(request: web.Request) -> web.Response:
    auth = request.headers.get("authorization", "")
    found = None
    if auth.lower().startswith("bearer "):
        found = _state(request).access_tokens.get(auth[7:].strip())
    if found is None:
        return web.json_response(
            {"error": "invalid_token", "error_description": "unknown or missing access token"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    sub, scope = found
    user = _state(request).users.get(sub) or DEFAULT_USERS[DEFAULT_SUB]
    body: dict = {"sub": sub}
    scopes = scope.split()
    if "email" in scopes:
        body |= {"email": user["email"], "email_verified": True}
    if "profile" in scopes:
        body |= {"name": user["name"], "preferred_username": sub}
    if "openid" in scopes:
        body["groups"] = list(user["groups"])
    return web.json_response(body)


async def _json_object(request: web.Request) -> dict | web.Response:
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return web.json_response({"error": "the body must be a JSON object"}, status=400)
    return body


async def put_user(request: web.Request) -> web.Response:
    """Add or replace a test user: ``{"email", "name", "groups": [..]}``."""
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    sub = request.match_info["sub"]
    groups = body.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        return web.json_response({"error": "groups must be a list of strings"}, status=400)
    user = {
        "email": str(body.get("email") or f"{sub}@example.com"),
        "name": str(body.get("name") or sub),
        "groups": groups,
    }
    _state(request).users[sub] = user
    return web.json_response({"sub": sub, **user})


async def get_user(request: web.Request) -> web.Response:
    sub = request.match_info["sub"]
    user = _state(request).users.get(sub)
    if user is None:
        return web.json_response({"error": f"no user {sub!r}"}, status=404)
    return web.json_response({"sub": sub, **user})


async def put_client(request: web.Request) -> web.Response:
    """``{"user": <sub>, "fault": <one of ID_TOKEN_FAULTS> | null}`` for one client id."""
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    fault = body.get("fault")
    if fault is not None and fault not in ID_TOKEN_FAULTS:
        return web.json_response(
            {"error": f"fault must be one of {sorted(ID_TOKEN_FAULTS)} or null"}, status=400
        )
    user = str(body.get("user") or DEFAULT_SUB)
    if user not in _state(request).users:
        return web.json_response({"error": f"no user {user!r}"}, status=400)
    _state(request).clients[request.match_info["client_id"]] = _Client(user=user, fault=fault)
    return web.json_response(
        {"client_id": request.match_info["client_id"], "user": user, "fault": fault}
    )


async def delete_client(request: web.Request) -> web.Response:
    _state(request).clients.pop(request.match_info["client_id"], None)
    return web.Response(status=204)


# --------------------------------------------------------------------------- test helpers


async def calls(request: web.Request) -> web.Response:
    """Call counts by grant (or endpoint), optionally for one ``client_id``."""
    client_id = request.query.get("client_id")
    totals: Counter = Counter()
    for (name, cid), n in _state(request).calls.items():
        if client_id is None or cid == client_id:
            totals[name] += n
    return web.json_response(dict(totals))


async def clear_calls(request: web.Request) -> web.Response:
    _state(request).calls.clear()
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    """Give ``app`` the authorisation server's state and routes."""
    app[OAUTH_STATE] = OAuthServerState()
    app.add_routes(
        [
            web.get("/oauth/authorize", authorize),
            web.post("/oauth/token", token),
            web.post("/oauth/device/code", device_code),
            web.get("/oauth/device", device_page),
            web.post("/oauth/device", device_decide),
            web.post("/qwen-oauth/api/v1/oauth2/device/code", qwen_device_code),
            web.post("/qwen-oauth/api/v1/oauth2/token", qwen_token),
            web.get("/openrouter/auth", openrouter_authorize),
            web.post("/openrouter/api/v1/auth/keys", openrouter_key_exchange),
            web.get("/.well-known/openid-configuration", discovery),
            web.get("/oauth/jwks", jwks),
            web.get("/oauth/userinfo", userinfo),
            web.post("/oauth/userinfo", userinfo),
            web.put("/_sim/oidc/users/{sub}", put_user),
            web.get("/_sim/oidc/users/{sub}", get_user),
            web.put("/_sim/oidc/clients/{client_id}", put_client),
            web.delete("/_sim/oidc/clients/{client_id}", delete_client),
            web.get("/_sim/oauth/calls", calls),
            web.delete("/_sim/oauth/calls", clear_calls),
        ]
    )
