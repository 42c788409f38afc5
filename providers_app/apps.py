from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    """Everything about talking to LLM providers: credentials, kit, simulator."""

    name = "providers_app"
    verbose_name = "Providers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from providers_app import signals  # noqa: F401  (connects the cache invalidation)
