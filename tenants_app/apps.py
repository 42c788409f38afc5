from django.apps import AppConfig


class TenantsConfig(AppConfig):
    """Tenants and their virtual keys, quotas, budgets, usage and invoices."""

    name = "tenants_app"
    verbose_name = "Tenants"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tenants_app.services import (  # noqa: F401  (config sections)
            audit,
            config_alerts,
            config_as_code,
        )
        from tenants_app.services.alerts import events as alert_events

        audit.connect()
        alert_events.connect()
