from django.apps import AppConfig
from django.conf import settings


class ProvidersConfig(AppConfig):
    """Everything about talking to LLM providers: credentials, kit, simulator."""

    name = "providers_app"
    verbose_name = "Providers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from providers_app import signals  # noqa: F401  (connects the cache invalidation)
        from providers_app.kit import media_fetch
        from providers_app.services import config_as_code  # noqa: F401  (its config section)

        # the kit is framework-free: hand it the settings' fetch limits once
        media_fetch.configure(
            media_fetch.FetchPolicy(
                max_bytes=settings.MEDIA_FETCH_MAX_BYTES,
                timeout=settings.MEDIA_FETCH_TIMEOUT_SECONDS,
                max_redirects=settings.MEDIA_FETCH_MAX_REDIRECTS,
                allow_private=settings.MEDIA_FETCH_ALLOW_PRIVATE,
                max_request_bytes=settings.GATEWAY_MAX_MEDIA_REQUEST_BYTES,
            )
        )
