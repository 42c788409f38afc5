"""A tenant's virtual keys. Members create keys; admins manage every key, a member only
the keys they created. A key's secret is in the answer that creates it and nowhere else;
keys are shown by prefix."""

import datetime as dt
from decimal import Decimal
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status

from tenants_app import selectors
from tenants_app.api.schemas import MAX_INT, Strict, patch_field
from tenants_app.auth import require_key_manager, tenant_access, who
from tenants_app.models import Role, VirtualKey
from tenants_app.services.keys import virtual_key_create, virtual_key_revoke, virtual_key_update

router = Router(tags=["tenants"])

# tenants_app.models.UnsupportedParams, as the schema's enum
UnsupportedParamsChoice = Literal["refuse", "drop"]


class KeyOut(Schema):
    id: int
    name: str
    prefix: str
    allowed_models: list[str]
    rpm: int | None
    tpm: int | None
    max_concurrent_streams: int | None
    monthly_budget_usd: Decimal | None
    cache_enabled: bool
    cache_ttl_seconds: int
    unsupported_params: UnsupportedParamsChoice
    capture_bodies: bool | None = Field(description="request log body capture; null: the tenant's")
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    created_by: str | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None


class KeyCreatedOut(Schema):
    key: KeyOut
    secret: str = Field(description="shown once; aipk stores only its hash")


class KeyIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    allowed_models: list[str] = Field(default_factory=list, max_length=500)
    rpm: int | None = Field(default=None, ge=1, le=MAX_INT)
    tpm: int | None = Field(default=None, ge=1, le=MAX_INT)
    max_concurrent_streams: int | None = Field(default=None, ge=1, le=MAX_INT)
    monthly_budget_usd: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=4)
    cache_enabled: bool = False
    cache_ttl_seconds: int = Field(default=300, ge=1, le=30 * 24 * 3600)
    unsupported_params: UnsupportedParamsChoice = Field(
        default="refuse",
        description="A request field the provider cannot take: refuse it with a 400, or "
        "drop it (when only the wording of the answer depends on it) and name it in the "
        "x-aipk-dropped-params header.",
    )
    capture_bodies: bool | None = Field(
        default=None,
        description="Keep this key's request and response bodies in the request log "
        "(redacted, capped, kept REQUEST_LOG_BODY_RETENTION_DAYS); null follows the tenant.",
    )
    expires_at: dt.datetime | None = None


class KeyPatch(Strict):
    name: str = patch_field(min_length=1, max_length=100)
    allowed_models: list[str] = patch_field(max_length=500)
    rpm: int | None = Field(default=None, ge=1, le=MAX_INT)
    tpm: int | None = Field(default=None, ge=1, le=MAX_INT)
    max_concurrent_streams: int | None = Field(default=None, ge=1, le=MAX_INT)
    monthly_budget_usd: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=4)
    cache_enabled: bool = patch_field()
    cache_ttl_seconds: int = patch_field(ge=1, le=30 * 24 * 3600)
    unsupported_params: UnsupportedParamsChoice = patch_field()
    capture_bodies: bool | None = Field(default=None, description="null: the tenant's choice")
    expires_at: dt.datetime | None = None


def key_out(key: VirtualKey) -> dict[str, Any]:
    fields = [f for f in KeyOut.model_fields if f != "created_by"]
    return {
        **{f: getattr(key, f) for f in fields},
        "created_by": key.created_by.get_username() if key.created_by else None,
    }


@router.get("/{slug}/keys", response=list[KeyOut])
def list_keys(request: HttpRequest, slug: str) -> list[dict[str, Any]]:
    """Every key of the tenant, shown by prefix; never a secret or hash."""
    access = tenant_access(request, slug)
    return [key_out(k) for k in selectors.tenant_keys(access.tenant)]


@router.post("/{slug}/keys", response={201: KeyCreatedOut})
def create_key(request: HttpRequest, slug: str, payload: KeyIn) -> Status:
    """Member. The answer holds the secret: the only time aipk shows it."""
    access = tenant_access(request, slug, Role.MEMBER)
    key, secret = virtual_key_create(tenant=access.tenant, **payload.model_dump(), **who(request))
    return Status(201, {"key": key_out(key), "secret": secret})


@router.get("/{slug}/keys/{key_id}", response=KeyOut)
def get_key(request: HttpRequest, slug: str, key_id: int) -> dict[str, Any]:
    access = tenant_access(request, slug)
    return key_out(selectors.tenant_key(access.tenant, key_id))


@router.patch("/{slug}/keys/{key_id}", response=KeyOut)
def update_key(request: HttpRequest, slug: str, key_id: int, payload: KeyPatch) -> dict[str, Any]:
    """Admin, or the member who created the key."""
    access = tenant_access(request, slug, Role.MEMBER)
    key = selectors.tenant_key(access.tenant, key_id)
    require_key_manager(access, key)
    fields = payload.model_dump(exclude_unset=True)
    return key_out(virtual_key_update(key=key, **fields, **who(request)))


@router.post("/{slug}/keys/{key_id}/revoke", response=KeyOut)
def revoke_key(request: HttpRequest, slug: str, key_id: int) -> dict[str, Any]:
    """Admin, or the member who created the key. Takes effect on the next request."""
    access = tenant_access(request, slug, Role.MEMBER)
    key = selectors.tenant_key(access.tenant, key_id)
    require_key_manager(access, key)
    return key_out(virtual_key_revoke(key=key, **who(request)))
