"""Your own admin tokens: bearer credentials for scripts that act as you. Made only
from a console session, shown by prefix, revoked by their owner."""

import datetime as dt

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status

from aipk_site.infra.errors import NotFound, PermissionDenied
from tenants_app import selectors
from tenants_app.api.schemas import Strict
from tenants_app.auth import by_token, who
from tenants_app.models import AdminToken
from tenants_app.services.keys import admin_token_create, admin_token_revoke

router = Router(tags=["admin tokens"])


class TokenOut(Schema):
    id: int
    name: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class TokenIn(Strict):
    name: str = Field(min_length=1, max_length=100)


class TokenCreatedOut(Schema):
    token: TokenOut
    secret: str = Field(description="shown once; aipk stores only its hash")


@router.get("/", response=list[TokenOut])
def list_tokens(request: HttpRequest) -> list[AdminToken]:
    """Your own admin tokens, shown by prefix."""
    return list(selectors.user_admin_tokens(request.auth))


@router.post("/", response={201: TokenCreatedOut})
def create_token(request: HttpRequest, payload: TokenIn) -> Status:
    """Needs a console session: a token cannot mint tokens, so a leaked one cannot
    outlive its own revocation."""
    if by_token(request):
        raise PermissionDenied("admin tokens are created from a console session")
    token, secret = admin_token_create(user=request.auth, name=payload.name, **who(request))
    return Status(201, {"token": token, "secret": secret})


@router.post("/{token_id}/revoke", response=TokenOut)
def revoke_token(request: HttpRequest, token_id: int) -> AdminToken:
    token = selectors.user_admin_token(request.auth, token_id)
    if token is None:
        raise NotFound("admin token not found")
    return admin_token_revoke(token=token, **who(request))
