"""A tenant's recorded usage: totals grouped by day, model, provider or key, and every
request as CSV, for whole UTC days. (The live admission counters are the gateway's:
aipk_site/gateway/live_api.py.)"""

import datetime as dt
from decimal import Decimal
from typing import Any, Literal

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone
from ninja import Field, Query, Router, Schema

from aipk_site.infra.errors import InvalidRequest
from tenants_app import selectors
from tenants_app.api.downloads import csv_response
from tenants_app.auth import tenant_access
from tenants_app.services import billing

router = Router(tags=["tenants"])


class UsageQuery(Schema):
    group_by: Literal["day", "model", "provider", "key", "user"] = "day"
    start: dt.date | None = Field(default=None, alias="from", description="default: 1st of month")
    end: dt.date | None = Field(default=None, alias="to", description="inclusive; default today")


class UsageRow(Schema):
    group: str | None
    key_id: int | None = None
    key_name: str | None = None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = Field(description="of prompt_tokens: read from the provider's cache")
    cache_write_tokens: int = Field(description="of prompt_tokens: written to the cache")
    reasoning_tokens: int = Field(description="of completion_tokens: hidden reasoning")
    cost_usd: Decimal


class UsageTotals(Schema):
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = Field(description="of prompt_tokens: read from the provider's cache")
    cache_write_tokens: int = Field(description="of prompt_tokens: written to the cache")
    reasoning_tokens: int = Field(description="of completion_tokens: hidden reasoning")
    cost_usd: Decimal


class UsageOut(Schema):
    group_by: str
    start: dt.date = Field(serialization_alias="from")
    end: dt.date = Field(serialization_alias="to")
    rows: list[UsageRow]
    totals: UsageTotals


class DateRange(Schema):
    start: dt.date | None = Field(default=None, alias="from")
    end: dt.date | None = Field(default=None, alias="to")


def _date_range(start: dt.date | None, end: dt.date | None) -> tuple[dt.date, dt.date]:
    today = timezone.now().date()
    end = end or today
    start = start or end.replace(day=1)
    if end < start:
        raise InvalidRequest("to: must not be before 'from'", param="to")
    return start, end


@router.get("/{slug}/usage", response=UsageOut, by_alias=True)
def usage_summary(request: HttpRequest, slug: str, query: Query[UsageQuery]) -> dict[str, Any]:
    """Totals grouped by day, model, provider, key or end user (the requests' ``user`` /
    ``metadata.user_id``), for whole UTC days from..to."""
    access = tenant_access(request, slug)
    start, end = _date_range(query.start, query.end)
    return {
        "group_by": query.group_by,
        "start": start,
        "end": end,
        "rows": selectors.usage_summary(
            tenant=access.tenant, group_by=query.group_by, start=start, end=end
        ),
        "totals": selectors.usage_totals(tenant=access.tenant, start=start, end=end),
    }


@router.get("/{slug}/usage/csv")
def usage_csv(
    request: HttpRequest, slug: str, query: Query[DateRange]
) -> HttpResponse | StreamingHttpResponse:
    """One line per request in the range, streamed."""
    access = tenant_access(request, slug)
    start, end = _date_range(query.start, query.end)
    rows = selectors.tenant_usage_rows(tenant=access.tenant, start=start, end=end)
    return csv_response(
        billing.usage_csv(rows.iterator(chunk_size=2000)),
        f"usage-{access.tenant.slug}-{start}-{end}.csv",
    )
