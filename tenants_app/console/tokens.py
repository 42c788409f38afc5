"""Your own admin tokens (bearer credentials for scripts that act as you on the
management API): listed by prefix, made here -- the API refuses to mint them from a
token, so a console session is where they come from -- and revoked by their owner.

A new token's secret exists only in the response to the POST that created it, as a
virtual key's does (tenants_app/console/keys.py)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from aipk_site.infra.errors import InvalidRequest, NotFound
from aipk_site.infra.forms import ServiceErrorsMixin
from tenants_app import selectors
from tenants_app.auth import who
from tenants_app.console.access import console_view
from tenants_app.console.pages import INVALID
from tenants_app.models import AdminToken
from tenants_app.services.keys import admin_token_create, admin_token_revoke


class TokenForm(ServiceErrorsMixin, forms.Form):
    name = forms.CharField(
        max_length=100, help_text="What the token is for, e.g. “CI deploys” or “nightly export”."
    )


def _tokens_page(
    request: HttpRequest,
    *,
    form: TokenForm | None = None,
    created: AdminToken | None = None,
    secret: str | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "nav_section": "tokens",
        "tokens": list(selectors.user_admin_tokens(request.user)),
        "form": form or TokenForm(),
        "created": created,
        "secret": secret,
    }
    template = "console/_tokens_panel.html" if request.htmx else "console/tokens.html"
    return render(request, template, context, status=status)


@never_cache  # a page holding a new secret stays out of every cache
@console_view
def admin_tokens(request: HttpRequest) -> HttpResponse:
    """GET: your tokens by prefix; POST: make one and show its secret once."""
    if request.method != "POST":
        return _tokens_page(request)
    form = TokenForm(request.POST)
    if form.is_valid():
        try:
            token, secret = admin_token_create(
                user=request.user, name=form.cleaned_data["name"], **who(request)
            )
        except InvalidRequest as error:
            form.add_service_error(error)
        else:
            return _tokens_page(request, created=token, secret=secret, status=201)
    return _tokens_page(request, form=form, status=INVALID)


@require_POST
@console_view
def admin_token_revoke_view(request: HttpRequest, token_id: int) -> HttpResponse:
    """Your own tokens only: someone else's is a 404, as if it did not exist."""
    token = selectors.user_admin_token(request.user, token_id)
    if token is None:
        raise NotFound("admin token not found")
    admin_token_revoke(token=token, **who(request))
    if request.htmx:
        return _tokens_page(request)
    messages.success(request, f"Token {token.name} revoked.")
    return redirect("console:admin_tokens")
