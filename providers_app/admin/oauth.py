"""OAuth accounts and the flows that connect them.

Tokens come only from an OAuth flow (providers_app/services/oauth/), never from a form:
access and refresh tokens, PKCE verifiers, device codes and state parameters are not
form fields at all, so no page and no HTML source ever carries them. An account shows
as its label and the last four characters of its access token.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib import admin
from django.utils import timezone

from aipk_site.infra.admin import (
    ServiceAdmin,
    ServiceModelForm,
    audited_delete,
    audited_save,
    report,
)
from aipk_site.infra.audit import audit_record
from providers_app.admin.write_only import masked
from providers_app.kit.oauth import OAuthError
from providers_app.models import OAuthCredential, OAuthFlow
from providers_app.services.oauth import ensure_fresh_token


class OAuthCredentialForm(ServiceModelForm):
    class Meta:
        model = OAuthCredential
        fields = ["account_label", "tenant"]

    def save_through_service(self, original):
        return audited_save(
            original,
            action="oauth_credential.update",
            form=self,
            fields=["account_label", "tenant"],
        )


@admin.register(OAuthCredential)
class OAuthCredentialAdmin(ServiceAdmin):
    """Tokens come only from an OAuth flow (services.oauth), never from a form."""

    form = OAuthCredentialForm
    fieldsets = (
        (None, {"fields": ("provider", "account_label", "tenant", "state")}),
        (
            "Tokens (write-only: connect the account through its OAuth flow)",
            {
                "fields": (
                    "access_token_hint",
                    "refresh_token_status",
                    "client_id",
                    "client_secret_status",
                    "scopes",
                    "expires_at",
                    "resource_url",
                )
            },
        ),
        (
            "Refresh",
            {"fields": ("refresh_count", "last_refresh_at", "last_refresh_error", "created_at")},
        ),
        (
            "Usage",
            {
                "fields": (
                    "request_count",
                    "error_count",
                    "failure_count",
                    "last_success_at",
                    "last_failure_at",
                    "last_error_type",
                )
            },
        ),
    )
    readonly_fields = (
        "provider",
        "state",
        "access_token_hint",
        "refresh_token_status",
        "client_id",
        "client_secret_status",
        "scopes",
        "expires_at",
        "resource_url",
        "refresh_count",
        "last_refresh_at",
        "last_refresh_error",
        "created_at",
        "request_count",
        "error_count",
        "failure_count",
        "last_success_at",
        "last_failure_at",
        "last_error_type",
    )
    list_display = (
        "account_label",
        "provider",
        "tenant",
        "access_token_hint",
        "state",
        "expires_at",
        "refresh_count",
        "last_refresh_at",
        "last_refresh_error",
    )
    list_filter = ("state", "provider__type", "provider", ("tenant", admin.EmptyFieldListFilter))
    search_fields = ("account_label", "last4", "provider__name", "client_id")
    list_select_related = ("provider", "tenant")
    ordering = ("provider__name", "created_at", "id")
    date_hierarchy = "created_at"
    autocomplete_fields = ("tenant",)
    actions = ["refresh_selected"]

    def has_add_permission(self, request):
        return False  # connect an account through the OAuth flow instead

    @admin.display(description="access token", ordering="last4")
    def access_token_hint(self, obj):
        return masked(obj.last4)

    @admin.display(description="refresh token")
    def refresh_token_status(self, obj):
        return "stored" if obj.refresh_token else "none"

    @admin.display(description="client secret")
    def client_secret_status(self, obj):
        return "stored" if obj.client_secret else "none"

    def delete_one(self, request, obj):
        audited_delete(
            request,
            obj,
            action="oauth_credential.delete",
            tenant=obj.tenant,
            provider=obj.provider.name,
            account_label=obj.account_label,
            last4=obj.last4,
        )

    @admin.action(description="Refresh selected OAuth tokens now")
    def refresh_selected(self, request, queryset):
        credentials = list(queryset.select_related("provider"))

        async def refresh_all():
            results = []
            for credential in credentials:
                try:
                    fresh = await ensure_fresh_token(credential.pk, force=True)
                except OAuthError as exc:
                    # the RFC 6749 error code only: descriptions may quote provider text
                    results.append((credential, False, exc.error, exc.permanent))
                else:
                    results.append((fresh, True, "", False))
            return results

        for credential, ok, error, permanent in async_to_sync(refresh_all)():
            if ok:
                audit_record(
                    action="oauth_credential.refresh",
                    obj=credential,
                    actor=request.user,
                    tenant=credential.tenant,
                    changes={"last4": credential.last4},
                )
                report(self, request, credential, True, "refreshed")
            else:
                hint = "; it needs re-authorisation" if permanent else ""
                report(self, request, credential, False, f"refresh failed ({error}){hint}")


@admin.register(OAuthFlow)
class OAuthFlowAdmin(admin.ModelAdmin):
    """Pending and finished authorisations. The PKCE verifier, device code and state
    parameter are never shown; a pending flow can be deleted to cancel it."""

    fields = (
        "provider",
        "kind",
        "status",
        "user_code",
        "verification_uri",
        "redirect_uri",
        "poll_interval",
        "created_by",
        "created_at",
        "expires_at",
        "used_at",
        "error",
        "oauth_credential",
        "api_key",
    )
    readonly_fields = fields
    list_display = ("provider", "kind", "status", "created_by", "created_at", "expires_at")
    list_filter = ("kind", "provider", ("used_at", admin.EmptyFieldListFilter))
    search_fields = ("provider__name", "user_code", "created_by__username", "error")
    list_select_related = ("provider", "created_by")
    ordering = ("-created_at",)
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="status")
    def status(self, obj):
        if obj.error:
            return "failed"
        if obj.used_at:
            return "completed"
        return "expired" if obj.expires_at <= timezone.now() else "pending"

    def delete_model(self, request, obj):
        audited_delete(request, obj, action="oauth_flow.delete", kind=obj.kind)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)
