"""Health history and alerts: written by the health checks, read-only here."""

from __future__ import annotations

from django.contrib import admin

from aipk_site.infra.admin import ReadOnlyAdmin
from providers_app.models import HealthAlert, HealthCheck


class _CredentialColumn:
    @admin.display(description="credential")
    def credential(self, obj):
        return obj.api_key or obj.oauth_credential or "provider"


@admin.register(HealthCheck)
class HealthCheckAdmin(_CredentialColumn, ReadOnlyAdmin):
    """Probe history, pruned by its periodic task (services.health.prune_health_history)."""

    list_display = ("checked_at", "provider", "credential", "healthy", "latency_ms", "error_type")
    list_filter = ("healthy", "provider", "error_type")
    search_fields = ("provider__name", "error_type", "detail")
    list_select_related = ("provider", "api_key", "oauth_credential")
    ordering = ("-checked_at",)
    date_hierarchy = "checked_at"
    show_full_result_count = False


@admin.register(HealthAlert)
class HealthAlertAdmin(_CredentialColumn, ReadOnlyAdmin):
    list_display = ("created_at", "provider", "credential", "healthy", "message")
    list_filter = ("healthy", "provider")
    search_fields = ("provider__name", "message")
    list_select_related = ("provider", "api_key", "oauth_credential")
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
