"""Prices per million tokens, by provider type or one provider, and model."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from aipk_site.infra.admin import ServiceAdmin, ServiceModelForm
from providers_app.models import ProviderType
from tenants_app.models import Pricing
from tenants_app.services.pricing import pricing_delete, pricing_set


class PricingForm(ServiceModelForm):
    class Meta:
        model = Pricing
        fields = ["provider_type", "provider", "model", "input_per_million", "output_per_million"]
        help_texts = {
            "provider": "Empty: the price for every provider of this type.",
        }

    def save_through_service(self, original):
        # pricing_set finds the row by (provider type or provider, model), so on a
        # change those stay as stored and only the prices move
        if original is None:
            data = self.cleaned_data
            provider_type, provider, model = data["provider_type"], data["provider"], data["model"]
        else:
            provider_type, provider, model = (
                original.provider_type,
                original.provider,
                original.model,
            )
        return pricing_set(
            provider_type=provider_type,
            provider=provider,
            model=model,
            input_per_million=self.cleaned_data["input_per_million"],
            output_per_million=self.cleaned_data["output_per_million"],
            actor=self.actor,
        )


@admin.register(Pricing)
class PricingAdmin(ServiceAdmin):
    form = PricingForm
    list_display = (
        "model",
        "provider_type",
        "provider",
        "input_per_million",
        "output_per_million",
        "source",
        "updated_at",
    )
    list_filter = ("source", "provider_type", "provider")
    search_fields = ("model", "provider_type", "provider__name")
    list_select_related = ("provider",)
    ordering = ("provider_type", "model")
    autocomplete_fields = ("provider",)
    readonly_fields = ("source", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return self.readonly_fields
        return ("provider_type", "provider", "model", *self.readonly_fields)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "provider_type":
            return forms.ChoiceField(choices=ProviderType.choices, label="Provider type")
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def delete_one(self, request, obj):
        pricing_delete(pricing=obj, actor=request.user)
