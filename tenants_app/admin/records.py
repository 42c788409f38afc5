"""Usage records, invoices, stored responses, captured request bodies and the audit log:
written by the system, read-only here."""

from __future__ import annotations

from django.contrib import admin

from aipk_site.infra.admin import ReadOnlyAdmin
from tenants_app.models import AuditEvent, Invoice, RequestBody, StoredResponse, UsageRecord


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    """Read-only for everyone, superusers included: usage rows are the billing ledger
    that invoices and budgets are computed from, and an edit or delete here would
    silently change what a tenant is charged. Retention belongs in a service/task."""

    list_display = (
        "created_at",
        "request_id",
        "tenant",
        "virtual_key",
        "provider_name",
        "model",
        "endpoint",
        "status",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "latency_ms",
        "cached",
        "streamed",
    )
    list_filter = ("status", "endpoint", "cached", "streamed", "tokens_estimated", "tenant")
    search_fields = ("request_id", "model", "alias", "provider_name", "error_type")
    list_select_related = ("tenant", "virtual_key")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    raw_id_fields = ("tenant", "virtual_key", "provider")
    show_full_result_count = False  # a COUNT(*) over the whole ledger on every page is slow


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    """Generated from usage by billing (hourly, and on request through the API)."""

    list_display = ("tenant", "period", "total_usd", "final", "generated_at")
    list_filter = ("final", "tenant")
    search_fields = ("tenant__name", "tenant__slug")
    list_select_related = ("tenant",)
    date_hierarchy = "period"
    ordering = ("-period", "tenant__name")


@admin.register(StoredResponse)
class StoredResponseAdmin(ReadOnlyAdmin):
    """Whose and when, never what: the conversation kept for ``previous_response_id`` is
    the tenant's own data (prompts, answers, tool results), so it is not shown here; the
    tenant reads it back through ``GET /v1/responses/{id}``. Deleted by retention."""

    list_display = ("response_id", "tenant", "virtual_key", "model", "created_at")
    list_filter = ("tenant",)
    search_fields = ("response_id", "model")
    list_select_related = ("tenant", "virtual_key")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    fields = ("response_id", "tenant", "virtual_key", "model", "created_at")
    show_full_result_count = False


@admin.register(RequestBody)
class RequestBodyAdmin(ReadOnlyAdmin):
    """Whose and when, never what, as for stored responses: a captured body is the
    tenant's data even redacted; the tenant reads it through the request log API
    (``GET /api/tenants/{slug}/requests/{id}``). Deleted by retention at ``expires_at``."""

    list_display = ("request_id", "tenant", "request_truncated", "response_truncated", "expires_at")
    list_filter = ("tenant",)
    search_fields = ("request_id",)
    list_select_related = ("tenant",)
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    fields = (
        "request_id",
        "tenant",
        "request_truncated",
        "response_truncated",
        "created_at",
        "expires_at",
    )
    show_full_result_count = False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit log is evidence: nobody edits or deletes it, superusers included."""

    list_display = (
        "created_at",
        "action",
        "actor_label",
        "tenant",
        "object_type",
        "object_id",
        "object_repr",
        "ip_address",
    )
    list_filter = ("action", "object_type", "tenant")
    search_fields = ("action", "actor_label", "object_type", "object_id", "object_repr")
    list_select_related = ("tenant", "actor")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
