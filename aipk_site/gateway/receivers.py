"""Cache invalidation only: the gateway drops what it cached when management or a
provider change says so. Tenant management announces its changes (tenants_app/signals.py);
a provider saved or deleted anywhere (its services, the admin, a task) arrives as the
model's own post_save/post_delete. Neither app imports the gateway, so the gateway
listens here. No business logic lives here. Connected with ``Signal.connect`` (what
Django's ``@receiver`` does) because Django ships no types for the decorator."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save

# modules, not their functions: looked up at each call, so a test may replace them
from aipk_site.gateway import key_auth, routing
from providers_app.models import Provider
from tenants_app.signals import keys_changed, routes_changed, tenant_changed


def _forget_routing_on_provider_change(sender: Any, **kwargs: Any) -> None:
    routing.routing_cache_clear()


post_save.connect(_forget_routing_on_provider_change, sender=Provider)
post_delete.connect(_forget_routing_on_provider_change, sender=Provider)


def _forget_routing(sender: Any, **kwargs: Any) -> None:
    routing.routing_cache_clear()


routes_changed.connect(_forget_routing)


def _forget_keys(sender: Any, *, key_hashes: list[str], **kwargs: Any) -> None:
    for key_hash in key_hashes:
        key_auth.key_auth_forget(key_hash)


keys_changed.connect(_forget_keys)


def _forget_tenant(sender: Any, *, tenant_id: int, **kwargs: Any) -> None:
    key_auth.key_auth_forget_tenant(tenant_id)


tenant_changed.connect(_forget_tenant)
