"""Console sign-in: the password form (while LOCAL_PASSWORDS_ENABLED) and OpenID Connect
single sign-on (when OIDC_* is set, docs/SECURITY.md "Single sign-on").

authlib (already the OAuth client of the provider flows) does the protocol: discovery,
state, nonce and PKCE kept in the session, the code exchange, and the id_token's RS256
signature (JWKS, refetched on an unknown key id) and claims (iss, aud, exp, iat, nonce,
at_hash). This module adds what authlib leaves to its caller: an id_token is required
(authlib skips validation when there is none), the discovery document must name the
configured issuer, userinfo must be about the same subject, and every failure is a
clear page, never a 500. What the groups grant is tenants_app/services/sso.py.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import requests
from authlib.integrations.django_client import OAuth, OAuthError
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from joserfc.errors import JoseError

from aipk_site.infra.audit import audit_record
from aipk_site.infra.client_ip import client_ip
from aipk_site.infra.errors import PermissionDenied
from tenants_app.services.sso import sso_user_sign_in

logger = logging.getLogger("aipk.sso")

CLIENT_NAME = "aipk_sso"
NEXT_SESSION_KEY = "aipk_sso_next"
SESSION_BACKEND = "tenants_app.auth_backends.LocalPasswordBackend"
PASSWORDS_OFF = "Password sign-in is turned off here. Sign in with single sign-on instead."

# one authlib client per configuration, so discovery and the JWKS are fetched once per
# process (authlib caches both on the client); keyed by the settings so a changed
# configuration (tests, a reload) gets a fresh one
_clients: dict[tuple, Any] = {}


class SsoFailed(Exception):
    """A sign-in the identity provider or its tokens did not allow; ``reason`` is a short
    code for the audit log, ``message`` what the person is told."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.reason, self.message, self.status = reason, message, status


def sso_enabled() -> bool:
    return bool(settings.OIDC_DISCOVERY_URL and settings.OIDC_CLIENT_ID)


def _client() -> Any:
    key = (
        settings.OIDC_DISCOVERY_URL,
        settings.OIDC_CLIENT_ID,
        settings.OIDC_CLIENT_SECRET,
        settings.OIDC_SCOPES,
        settings.OIDC_TIMEOUT_SECONDS,
    )
    client = _clients.get(key)
    if client is None:
        oauth = OAuth()
        client = oauth.register(
            CLIENT_NAME,
            client_id=settings.OIDC_CLIENT_ID,
            client_secret=settings.OIDC_CLIENT_SECRET or None,
            server_metadata_url=settings.OIDC_DISCOVERY_URL,
            client_kwargs={
                "scope": settings.OIDC_SCOPES,
                "code_challenge_method": "S256",
                "default_timeout": settings.OIDC_TIMEOUT_SECONDS,
            },
        )
        _clients.clear()
        _clients[key] = client
    metadata = client.load_server_metadata()
    expected = settings.OIDC_ISSUER
    if expected and metadata.get("issuer", "").rstrip("/") != expected:
        # OIDC Discovery §4.3: a document naming another issuer is not to be used
        _clients.pop(key, None)
        raise SsoFailed(
            "issuer_mismatch",
            "The identity provider's discovery document names another issuer.",
            status=502,
        )
    return client


def _issuer(client: Any) -> str:
    return str(client.load_server_metadata()["issuer"]).rstrip("/")


def _context(**extra: Any) -> dict[str, Any]:
    return {
        "sso_enabled": sso_enabled(),
        "sso_name": settings.OIDC_PROVIDER_NAME,
        "local_passwords_enabled": settings.LOCAL_PASSWORDS_ENABLED,
        **extra,
    }


class ConsoleLoginView(auth_views.LoginView):
    """Django's login view, plus the SSO button, and a refusal of any password while
    local passwords are off (the backend refuses them too; this says why)."""

    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(**kwargs) | _context()

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.LOCAL_PASSWORDS_ENABLED:
            return _passwords_off(request)
        return super().post(request, *args, **kwargs)


def _passwords_off(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "registration/login.html",
        _context(next=request.POST.get("next", ""), refused=PASSWORDS_OFF),
        status=403,
    )


def admin_login(request: HttpRequest, extra_context: Any = None) -> HttpResponse:
    """/admin/login/: the admin's own form while local passwords are on; otherwise the
    console sign-in page (SSO), and a password post is refused."""
    if settings.LOCAL_PASSWORDS_ENABLED:
        return admin.site.login(request, extra_context)
    if request.method == "POST":
        return _passwords_off(request)
    target = reverse("console:login")
    next_url = request.GET.get("next")
    if next_url:
        target += "?" + urlencode({"next": next_url})
    return HttpResponseRedirect(target)


def _failure_page(request: HttpRequest, failure: SsoFailed) -> HttpResponse:
    logger.warning("sso sign-in refused: %s", failure.reason)
    audit_record(
        action="auth.sso_sign_in_failed",
        object_type="auth.User",
        actor_label="sso",
        ip_address=client_ip(request),
        changes={"reason": failure.reason},
    )
    return render(
        request,
        "registration/sso_error.html",
        _context(message=failure.message, reason=failure.reason),
        status=failure.status,
    )


def _unreachable(exc: Exception) -> SsoFailed:
    # the exception's text can hold URLs and token-endpoint replies: only its class is kept
    return SsoFailed(
        "provider_unreachable",
        f"The identity provider could not be reached ({type(exc).__name__}). Try again later.",
        status=502,
    )


def sso_begin(request: HttpRequest) -> HttpResponse:
    if not sso_enabled():
        return _failure_page(
            request, SsoFailed("not_configured", "Single sign-on is not set up here.", 404)
        )
    next_url = request.GET.get("next", "")
    if next_url and url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        request.session[NEXT_SESSION_KEY] = next_url
    else:
        request.session.pop(NEXT_SESSION_KEY, None)
    try:
        client = _client()
        redirect_uri = request.build_absolute_uri(reverse("console:sso-callback"))
        return client.authorize_redirect(request, redirect_uri)
    except SsoFailed as failure:
        return _failure_page(request, failure)
    except (requests.RequestException, ValueError, KeyError) as exc:
        return _failure_page(request, _unreachable(exc))


def _validated_claims(request: HttpRequest) -> tuple[str, dict[str, Any]]:
    client = _client()
    # authlib checks aud only when told to (it checks azp, which a token for another
    # client can satisfy): iss, aud and sub are spelt out here
    claims_options = {
        "iss": {"essential": True, "value": client.load_server_metadata()["issuer"]},
        "aud": {"essential": True, "value": settings.OIDC_CLIENT_ID},
        "sub": {"essential": True},
    }
    try:
        token = client.authorize_access_token(request, claims_options=claims_options)
    except OAuthError as exc:
        if exc.error == "mismatching_state":
            raise SsoFailed(
                "bad_state",
                "This sign-in link is stale or was not started here. Start again.",
            ) from None
        if exc.error == "access_denied":
            raise SsoFailed(
                "access_denied", "The identity provider did not allow the sign-in.", 403
            ) from None
        raise SsoFailed(
            f"provider_error:{exc.error}"[:64],
            f"The identity provider refused the sign-in ({exc.error}).",
        ) from None
    except JoseError as exc:
        # a bad signature, an unknown key, a wrong iss / aud / nonce, an expired token
        claim = getattr(exc, "claim", None)
        raise SsoFailed(
            f"invalid_id_token:{exc.error}{f':{claim}' if claim else ''}"[:64],
            "The identity provider's answer could not be verified "
            f"(id_token: {exc.error}). Nobody was signed in.",
        ) from None
    claims = token.get("userinfo")
    if not claims:
        raise SsoFailed("no_id_token", "The identity provider returned no id_token.")
    claims = dict(claims)
    metadata = client.load_server_metadata()
    if metadata.get("userinfo_endpoint"):
        info = dict(client.userinfo(token=token))
        if str(info.get("sub")) != str(claims["sub"]):
            # OIDC Core §5.3.2: a userinfo reply about another subject must not be used
            raise SsoFailed(
                "userinfo_subject_mismatch",
                "The identity provider's answer was inconsistent. Nobody was signed in.",
            )
        claims = claims | {k: v for k, v in info.items() if k not in ("iss", "aud", "sub")}
    return _issuer(client), claims


def sso_callback(request: HttpRequest) -> HttpResponse:
    if not sso_enabled():
        return _failure_page(
            request, SsoFailed("not_configured", "Single sign-on is not set up here.", 404)
        )
    try:
        issuer, claims = _validated_claims(request)
        user = sso_user_sign_in(issuer=issuer, claims=claims, ip_address=client_ip(request))
    except SsoFailed as failure:
        return _failure_page(request, failure)
    except PermissionDenied as exc:
        return _failure_page(request, SsoFailed("account_inactive", exc.message, 403))
    except IntegrityError:
        # a first sign-in racing another for the same new username: the next one works
        return _failure_page(
            request,
            SsoFailed(
                "sign_in_race", "Another sign-in was creating this account. Sign in again.", 409
            ),
        )
    except (requests.RequestException, ValueError, KeyError) as exc:
        return _failure_page(request, _unreachable(exc))
    next_url = request.session.pop(NEXT_SESSION_KEY, "") or settings.LOGIN_REDIRECT_URL
    auth_login(request, user, backend=SESSION_BACKEND)
    return HttpResponseRedirect(next_url)
