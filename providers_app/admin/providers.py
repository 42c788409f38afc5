"""Providers and the models discovered at them.

A provider's OAuth client secret is write-only: typed into a password field that is never
filled back in, shown afterwards as "set (…last4)" or "none".
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db import models
from django.db.models import Count, Q

from aipk_site.infra.admin import ServiceAdmin, ServiceModelForm, audited_delete, report
from providers_app.admin.write_only import WRITE_ONLY, masked
from providers_app.kit.errors import ProviderError
from providers_app.models import DiscoveredModel, Provider
from providers_app.services.discovery import discover_models
from providers_app.services.health import check_provider_health
from providers_app.services.providers import EDITABLE_FIELDS, provider_create, provider_update


def _https_by_default(db_field, **kwargs):
    # an address typed without a scheme is https (Django 6's default, chosen now)
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return db_field.formfield(**kwargs)


class ProviderForm(ServiceModelForm):
    new_oauth_client_secret = forms.CharField(
        label="OAuth client secret",
        required=False,
        strip=True,
        widget=WRITE_ONLY,
        help_text="Write-only: leave empty to keep the stored secret.",
    )
    clear_oauth_client_secret = forms.BooleanField(
        label="Remove the stored OAuth client secret", required=False
    )
    param_fields = {"oauth_client_secret": "new_oauth_client_secret"}

    class Meta:
        model = Provider
        fields = ["name", "type", *EDITABLE_FIELDS]
        formfield_callback = _https_by_default

    def save_through_service(self, original):
        fields = self.changed_values(EDITABLE_FIELDS)
        if self.cleaned_data.get("new_oauth_client_secret"):
            fields["oauth_client_secret"] = self.cleaned_data["new_oauth_client_secret"]
        elif self.cleaned_data.get("clear_oauth_client_secret"):
            fields["oauth_client_secret"] = ""
        if original is None:
            return provider_create(
                name=self.cleaned_data["name"],
                type=self.cleaned_data["type"],
                actor=self.actor,
                **fields,
            )
        return provider_update(provider=original, actor=self.actor, **fields)


@admin.register(Provider)
class ProviderAdmin(ServiceAdmin):
    form = ProviderForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = (
        "name",
        "type",
        "enabled",
        "key_strategy",
        "endpoint",
        "active_keys",
        "oauth_accounts",
        "default_model",
        "updated_at",
    )
    list_filter = ("type", "enabled", "key_strategy")
    search_fields = ("name", "base_url", "default_model")
    ordering = ("name",)
    fieldsets = (
        (None, {"fields": ("name", "type", "enabled", "base_url", "default_model")}),
        ("Behaviour", {"fields": ("key_strategy", "timeout_seconds", "settings")}),
        (
            "OAuth client",
            {
                "classes": ("collapse",),
                "fields": (
                    "oauth_client_id",
                    "oauth_client_secret_status",
                    "new_oauth_client_secret",
                    "clear_oauth_client_secret",
                    "oauth_authorize_url",
                    "oauth_token_url",
                    "oauth_device_url",
                    "oauth_scopes",
                ),
            },
        ),
        ("History", {"fields": ("created_at", "updated_at")}),
    )
    readonly_fields = ("oauth_client_secret_status", "created_at", "updated_at")
    actions = ["check_health", "discover"]

    def get_readonly_fields(self, request, obj=None):
        # name and type are what models and adapters are addressed by: fixed once created
        return (*self.readonly_fields, "name", "type") if obj else self.readonly_fields

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                _active_keys=Count("api_keys", filter=Q(api_keys__state="active"), distinct=True),
                _oauth_accounts=Count("oauth_credentials", distinct=True),
            )
        )

    @admin.display(description="endpoint", ordering="base_url")
    def endpoint(self, obj):
        return obj.base_url or "public"

    @admin.display(description="active keys", ordering="_active_keys")
    def active_keys(self, obj):
        return obj._active_keys

    @admin.display(description="OAuth accounts", ordering="_oauth_accounts")
    def oauth_accounts(self, obj):
        return obj._oauth_accounts

    @admin.display(description="stored OAuth client secret")
    def oauth_client_secret_status(self, obj):
        secret = obj.oauth_client_secret if obj else ""
        return f"set ({masked(secret[-4:])})" if secret else "none"

    def delete_one(self, request, obj):
        audited_delete(request, obj, action="provider.delete", name=obj.name, type=obj.type)

    @admin.action(description="Check health of selected providers now")
    def check_health(self, request, queryset):
        for provider in queryset:
            check = check_provider_health(provider)
            text = (
                f"healthy ({check.latency_ms:.0f} ms)"
                if check.healthy
                else (f"unhealthy ({check.error_type or 'error'})")
            )
            report(self, request, provider, check.healthy, text)

    @admin.action(description="Discover models of selected providers now")
    def discover(self, request, queryset):
        for provider in queryset:
            try:
                found = discover_models(provider, refresh=True)
            except ProviderError as exc:
                report(self, request, provider, False, f"discovery failed ({exc.type})")
            else:
                report(self, request, provider, True, f"{len(found)} models")


@admin.register(DiscoveredModel)
class DiscoveredModelAdmin(admin.ModelAdmin):
    """Written by model discovery (Providers → "Discover models" action); deleting a row
    is allowed (audited) and the next discovery brings back what the provider still offers."""

    list_display = (
        "model_id",
        "provider",
        "name",
        "context_window",
        "max_output_tokens",
        "supports_streaming",
        "supports_tools",
        "input_price_per_million",
        "output_price_per_million",
        "source",
        "discovered_at",
    )
    list_filter = ("provider", "source", "supports_tools", "supports_streaming")
    search_fields = ("model_id", "name", "provider__name")
    list_select_related = ("provider",)
    ordering = ("provider__name", "model_id")
    date_hierarchy = "discovered_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        audited_delete(request, obj, action="discovered_model.delete", provider=obj.provider.name)

    def delete_queryset(self, request, queryset):
        for obj in queryset.select_related("provider"):
            self.delete_model(request, obj)
