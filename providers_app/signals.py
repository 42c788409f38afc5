"""Cache invalidation only: the request path holds each provider's usable
credentials in every process's memory (services/chat.py), and every save or
delete of a credential or provider, from any service, the admin or a task, must
drop that copy in every process. A signal is the one place that sees all of
them; ``credentials_forget`` publishes the change event that reaches the other
processes (aipk_site/infra/change_events.py). No business logic lives here."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from providers_app.models import ApiKey, OAuthCredential, Provider
from providers_app.services.chat import credentials_forget


@receiver([post_save, post_delete], sender=ApiKey)
@receiver([post_save, post_delete], sender=OAuthCredential)
def _forget_credentials(sender, instance, **kwargs) -> None:
    credentials_forget(instance.provider_id)


@receiver([post_save, post_delete], sender=Provider)
def _forget_provider(sender, instance, **kwargs) -> None:
    credentials_forget(instance.pk)
