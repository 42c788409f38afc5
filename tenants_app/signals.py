"""Cache invalidation only: routing caches providers per process
(services/routing.py), and a provider saved or deleted anywhere (its services,
the admin, a task) must drop that copy at once in this process. Providers live
in providers_app, which knows nothing of tenants, so the gateway listens here
instead of providers_app calling into it. No business logic lives here."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from providers_app.models import Provider
from tenants_app.services.routing import routing_cache_clear


@receiver([post_save, post_delete], sender=Provider)
def _forget_routing(sender, **kwargs) -> None:
    routing_cache_clear()
