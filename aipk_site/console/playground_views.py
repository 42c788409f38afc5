"""The playground: chat with a tenant's models over the websocket chat (/ws/chat/).

The page is only the frame; static/console/playground.js talks to the socket with the
console session, which is how docs/WEBSOCKET.md lets console users in. So the view offers
exactly what the socket will accept (tenants_app.selectors) and no more: a tenant
the user could not chat as would only fail once the socket opens.

Changing the tenant picker re-requests this page with ``?tenant=``; htmx keeps only
the model field from the answer (hx-select), so one view and one template serve both.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from aipk_site.gateway.formats.common import MAX_OUTPUT_TOKENS
from aipk_site.gateway.routing import models_for
from tenants_app.models import Tenant
from tenants_app.selectors import (
    chat_memberships,
    memberships_without_chat,
)


@login_required
def playground(request: HttpRequest) -> HttpResponse:
    memberships = list(chat_memberships(request.user))
    by_slug = {m.tenant.slug: m for m in memberships}
    asked = request.GET.get("tenant", "").strip()
    # An unknown slug and a tenant someone may not chat as get the same answer, so the
    # picker cannot be used to probe which tenants exist.
    unknown_tenant = bool(asked) and asked not in by_slug
    chosen = by_slug.get(asked) or (memberships[0] if memberships else None)
    models = tenant_chat_models(chosen.tenant) if chosen else []
    return render(
        request,
        "console/playground.html",
        {
            "nav_section": "playground",
            "memberships": memberships,
            "chosen": chosen,
            "unknown_tenant": unknown_tenant,
            "aliases": [m for m in models if m["kind"] == "alias"],
            "model_ids": [m for m in models if m["kind"] == "model"],
            "cannot_chat": list(memberships_without_chat(request.user)),
            # the chat's own bounds, so the browser refuses what the server would
            "max_output_tokens": MAX_OUTPUT_TOKENS,
        },
    )


def tenant_chat_models(tenant: Tenant) -> list[dict]:
    """What a member of ``tenant`` may call on the chat: its route aliases with a usable
    candidate, then "<provider>/<model>" ids (``{"id", "owned_by", "kind"}`` each).

    A console user has no key, so no key-level model list applies; the tenant's
    provider allow-list does (empty = every provider), as in the socket's own check."""
    allowed = frozenset(tenant.allowed_providers.values_list("id", flat=True))
    return async_to_sync(models_for)(
        tenant_id=tenant.pk, allowed_models=(), allowed_provider_ids=allowed or None
    )
