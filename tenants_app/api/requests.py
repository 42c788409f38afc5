"""A tenant's request log: every gateway request (refused ones included) with the
candidates it tried, its tokens, cost and timings, and -- when the tenant or key captures
bodies -- what it sent and got back. Read with the same roles as usage (any member; staff
everywhere). The entries are the usage rows (UsageRecord): one per request, no second log."""

import datetime as dt
from decimal import Decimal
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from aipk_site.infra.errors import InvalidRequest, NotFound
from tenants_app import selectors
from tenants_app.auth import tenant_access
from tenants_app.models import RequestBody, UsageRecord

router = Router(tags=["tenants"])

MAX_LIMIT = 200

# tenants_app.models.UsageStatus, as the schema's enum
StatusChoice = Literal["success", "error", "refused", "cancelled"]


class RequestLogQuery(Schema):
    request_id: str | None = Field(default=None, max_length=64)
    key: str | None = Field(
        default=None, max_length=16, description="a key's id, or the start of its prefix"
    )
    model: str | None = Field(
        default=None, max_length=200, description="the model called or the alias asked for"
    )
    status: StatusChoice | None = None
    since: dt.datetime | None = Field(default=None, description="inclusive")
    until: dt.datetime | None = Field(default=None, description="exclusive")
    limit: int = Field(default=50, ge=1, le=MAX_LIMIT)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class AttemptOut(Schema):
    provider: str
    credential_id: str = Field(description='"key:<id>" / "oauth:<id>"; never the secret')
    model: str
    status: Literal["answered", "error", "skipped"]
    http_status: int | None = None
    error_type: str = ""
    latency_ms: float
    answered: bool


class RequestOut(Schema):
    request_id: str
    created_at: dt.datetime
    key_id: int | None
    key_prefix: str | None
    endpoint: str
    alias: str
    provider: str
    credential_id: str
    model: str
    status: str
    error_type: str
    streamed: bool
    cached: bool
    latency_ms: float
    ttft_ms: float | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    tokens_estimated: bool
    cost_usd: Decimal
    cost_saved_usd: Decimal
    end_user: str
    attempts: list[AttemptOut]


class RequestPage(Schema):
    items: list[RequestOut]
    next_offset: int | None = Field(description="the offset of the next page; null at the end")


class BodyOut(Schema):
    request: str = Field(description="the parsed request as JSON text (redacted; may be cut)")
    request_truncated: bool
    headers: dict[str, str] = Field(
        description="the request's headers: client and tracing headers' values, every other "
        "header by name with its value '(not shown)'"
    )
    response: str = Field(description="the answer's text (redacted; may be cut)")
    response_truncated: bool
    expires_at: dt.datetime


class RequestDetail(RequestOut):
    body: BodyOut | None = Field(description="null unless the tenant or key captured bodies")


def _entry(record: UsageRecord) -> dict[str, Any]:
    key = record.virtual_key
    return {
        **{
            name: getattr(record, name)
            for name in RequestOut.model_fields
            if name not in ("key_id", "key_prefix", "provider")
        },
        "key_id": record.virtual_key_id,
        "key_prefix": key.prefix if key is not None else None,
        "provider": record.provider_name,
    }


def _body(body: RequestBody | None) -> dict[str, Any] | None:
    if body is None:
        return None
    return {name: getattr(body, name) for name in BodyOut.model_fields}


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    """A time without an offset is UTC, as every time the log shows is."""
    if moment is not None and moment.utcoffset() is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment


@router.get("/{slug}/requests", response=RequestPage)
def list_requests(request: HttpRequest, slug: str, query: Query[RequestLogQuery]) -> dict[str, Any]:
    """The tenant's requests, newest first, ``limit`` at a time from ``offset``."""
    access = tenant_access(request, slug)
    since, until = _aware(query.since), _aware(query.until)
    if since and until and until <= since:
        raise InvalidRequest("until: must be after 'since'", param="until")
    rows = selectors.request_log(
        tenant=access.tenant,
        request_id=query.request_id,
        key=query.key,
        model=query.model,
        status=query.status,
        since=since,
        until=until,
    )
    # one more than asked: whether a next page exists, without a count(*)
    page = list(rows[query.offset : query.offset + query.limit + 1])
    more = len(page) > query.limit
    return {
        "items": [_entry(r) for r in page[: query.limit]],
        "next_offset": query.offset + query.limit if more else None,
    }


@router.get("/{slug}/requests/{request_id}", response=RequestDetail)
def get_request(request: HttpRequest, slug: str, request_id: str) -> dict[str, Any]:
    """One request with its attempts and, when captured, its body. Another tenant's
    request id is as unknown as one that never existed."""
    access = tenant_access(request, slug)
    found = None
    if len(request_id) <= 64 and "\x00" not in request_id:  # no id of ours looks otherwise
        found = selectors.request_log_entry(tenant=access.tenant, request_id=request_id)
    if found is None:
        raise NotFound("request not found", param="request_id")
    record, body = found
    return {**_entry(record), "body": _body(body)}
