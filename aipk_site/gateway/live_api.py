"""The admission counters as the gateway holds them right now, on the management API
(GET /api/tenants/{slug}/usage/now). The counters are the gateway's own state, so the
operation lives here rather than in tenants_app (which may not import the gateway);
who may read them is decided exactly as for the recorded usage (tenants_app.auth: any
member of the tenant, staff everywhere). aipk_site/api.py mounts this router with the
API's one authentication."""

from typing import Any

from asgiref.sync import async_to_sync
from django.http import HttpRequest
from ninja import Router

from aipk_site.gateway.admission import usage_now
from tenants_app import selectors
from tenants_app.auth import tenant_access

router = Router(tags=["tenants"])


@router.get("/{slug}/usage/now", response=dict[str, Any])
def usage_right_now(request: HttpRequest, slug: str, key_id: int | None = None) -> dict[str, Any]:
    """The admission counters as the gateway sees them: this rate window's requests
    and tokens, the month's spend (micro-USD) and running streams, for the tenant
    and optionally one of its keys."""
    access = tenant_access(request, slug)
    if key_id is not None:
        selectors.tenant_key(access.tenant, key_id)
    return async_to_sync(usage_now)(key_id=key_id, tenant_id=access.tenant.pk)
