"""Cache invalidation only: the gateway drops what it cached when management or a
provider change says so. Tenant management announces its changes (tenants_app/signals.py);
a provider saved or deleted anywhere (its services, the admin, a task) arrives as the
model's own post_save/post_delete. Neither app imports the gateway, so the gateway
listens here. No business logic lives here."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

# modules, not their functions: looked up at each call, so a test may replace them
from aipk_site.gateway import key_auth, routing
from providers_app.models import Provider
from tenants_app.signals import keys_changed, routes_changed, tenant_changed


@receiver([post_save, post_delete], sender=Provider)
def _forget_routing_on_provider_change(sender: Any, **kwargs: Any) -> None:
    routing.routing_cache_clear()


@receiver(routes_changed)
def _forget_routing(sender: Any, **kwargs: Any) -> None:
    routing.routing_cache_clear()


@receiver(keys_changed)
def _forget_keys(sender: Any, *, key_hashes: list[str], **kwargs: Any) -> None:
    for key_hash in key_hashes:
        key_auth.key_auth_forget(key_hash)


@receiver(tenant_changed)
def _forget_tenant(sender: Any, *, tenant_id: int, **kwargs: Any) -> None:
    key_auth.key_auth_forget_tenant(tenant_id)
