"""Providers' API keys: added with a write-only secret, shown afterwards as their label and
last four characters; tested, disabled and re-enabled from the list.

A key's label and tenant have no service: ``audited_save`` saves and audits them.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin

from aipk_site.infra.admin import (
    ServiceAdmin,
    ServiceModelForm,
    audited_delete,
    audited_save,
    report,
)
from providers_app.admin.write_only import WRITE_ONLY, masked
from providers_app.models import ApiKey
from providers_app.services.credentials import api_key_add, api_key_set_state, api_key_test_live


class ApiKeyAddForm(ServiceModelForm):
    secret = forms.CharField(
        label="Secret",
        strip=True,
        widget=WRITE_ONLY,
        help_text="The provider's API key. Stored encrypted; only its last 4 characters "
        "are ever shown again.",
    )

    class Meta:
        model = ApiKey
        fields = ["provider", "tenant", "label"]

    def save_through_service(self, original):
        key = api_key_add(
            provider=self.cleaned_data["provider"],
            label=self.cleaned_data["label"],
            secret=self.cleaned_data["secret"],
            actor=self.actor,
        )
        # api_key_add has no tenant argument: scoping to a tenant is a second, audited step
        return audited_save(key, action="api_key.update", form=self, fields=["tenant"])


class ApiKeyChangeForm(ServiceModelForm):
    class Meta:
        model = ApiKey
        fields = ["label", "tenant", "state"]

    def save_through_service(self, original):
        key = audited_save(
            original,
            action="api_key.update",
            form=self,
            fields=["label", "tenant"],
        )
        if "state" in self.changed_data:
            key = api_key_set_state(
                key=key, state=self.cleaned_data["state"], actor=self.actor, reason="admin"
            )
        return key


@admin.register(ApiKey)
class ApiKeyAdmin(ServiceAdmin):
    form = ApiKeyChangeForm
    add_form = ApiKeyAddForm
    add_fieldsets = ((None, {"fields": ("provider", "tenant", "label", "secret")}),)
    fieldsets = (
        (None, {"fields": ("provider", "label", "stored_secret", "tenant", "state")}),
        (
            "Life cycle",
            {
                "fields": (
                    "created_at",
                    "cooling_down_until",
                    "rotated_at",
                    "retire_at",
                    "retired_at",
                )
            },
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
        "stored_secret",
        "created_at",
        "cooling_down_until",
        "rotated_at",
        "retire_at",
        "retired_at",
        "request_count",
        "error_count",
        "failure_count",
        "last_success_at",
        "last_failure_at",
        "last_error_type",
    )
    list_display = (
        "label",
        "provider",
        "tenant",
        "stored_secret",
        "state",
        "request_count",
        "error_count",
        "last_success_at",
        "last_failure_at",
        "created_at",
    )
    list_filter = ("state", "provider__type", "provider", ("tenant", admin.EmptyFieldListFilter))
    search_fields = ("label", "last4", "provider__name", "tenant__slug")
    list_select_related = ("provider", "tenant")
    ordering = ("provider__name", "created_at", "id")
    date_hierarchy = "created_at"
    autocomplete_fields = ("provider", "tenant")
    actions = ["test_selected", "disable_selected", "enable_selected"]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ()

    @admin.display(description="secret", ordering="last4")
    def stored_secret(self, obj):
        return masked(obj.last4)

    def delete_one(self, request, obj):
        audited_delete(
            request,
            obj,
            action="api_key.delete",
            tenant=obj.tenant,
            provider=obj.provider.name,
            label=obj.label,
            last4=obj.last4,
        )

    @admin.action(description="Test selected API keys against their provider")
    def test_selected(self, request, queryset):
        keys = list(queryset.select_related("provider"))

        async def test_all():
            return [(key, await api_key_test_live(key)) for key in keys]

        for key, (ok, error_type) in async_to_sync(test_all)():
            report(self, request, key, ok, "works" if ok else f"failed ({error_type})")

    def _set_state(self, request, queryset, state: str, verb: str) -> None:
        for key in queryset.select_related("provider"):
            if key.state == state:
                report(self, request, key, True, f"already {key.get_state_display().lower()}")
                continue
            api_key_set_state(key=key, state=state, actor=request.user, reason=f"admin: {verb}")
            report(self, request, key, True, verb)

    @admin.action(description="Disable selected API keys")
    def disable_selected(self, request, queryset):
        self._set_state(request, queryset, ApiKey.State.DISABLED, "disabled")

    @admin.action(description="Re-enable selected API keys")
    def enable_selected(self, request, queryset):
        self._set_state(request, queryset, ApiKey.State.ACTIVE, "re-enabled")
