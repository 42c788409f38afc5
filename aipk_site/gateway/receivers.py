"""Cache invalidation only: every change that a snapshot of the request path depends
on publishes a change event (aipk_site/infra/change_events.py), so this process drops
its copy at once and every other process as soon as the event reaches it (Redis
pub/sub). Tenant management announces its changes (tenants_app/signals.py); a
provider, virtual key or tenant saved or deleted anywhere (the admin, a shell, a task;
a key's creation, which announces nothing) arrives as the model's own
post_save/post_delete. Credentials are providers_app/signals.py's, prices
tenants_app/services/pricing.py's. Neither app imports the gateway, so the gateway
listens here. No business logic lives here. Connected with ``Signal.connect`` (what
Django's ``@receiver`` does) because Django ships no types for the decorator."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save

# modules, not their functions: looked up at each call, so a test may replace them
from aipk_site.gateway import key_auth, routing
from providers_app.models import Provider
from tenants_app.models import Tenant, VirtualKey
from tenants_app.signals import keys_changed, routes_changed, tenant_changed


def _routing_changed(sender: Any, **kwargs: Any) -> None:
    routing.routing_changed()


# a provider's enabled flag, name or settings feed routing's snapshot; routes change
# through tenants_app/services/routes.py, which announces routes_changed
post_save.connect(_routing_changed, sender=Provider)
post_delete.connect(_routing_changed, sender=Provider)
routes_changed.connect(_routing_changed)


def _forget_keys(sender: Any, *, key_hashes: list[str], **kwargs: Any) -> None:
    key_auth.key_auth_forget_many(list(key_hashes))


keys_changed.connect(_forget_keys)


def _forget_key_row(sender: Any, instance: VirtualKey, **kwargs: Any) -> None:
    # also a key just created: a process that remembered its hash as unknown forgets that
    key_auth.key_auth_forget(instance.key_hash)


post_save.connect(_forget_key_row, sender=VirtualKey)
post_delete.connect(_forget_key_row, sender=VirtualKey)


def _forget_tenant(sender: Any, *, tenant_id: int, **kwargs: Any) -> None:
    key_auth.key_auth_forget_tenant(tenant_id)


tenant_changed.connect(_forget_tenant)


def _forget_tenant_row(sender: Any, instance: Tenant, **kwargs: Any) -> None:
    key_auth.key_auth_forget_tenant(instance.pk)


post_save.connect(_forget_tenant_row, sender=Tenant)
post_delete.connect(_forget_tenant_row, sender=Tenant)
