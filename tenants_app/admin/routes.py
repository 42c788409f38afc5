"""Model routes: an alias and the provider/model candidates it is served by, global or
a tenant's own."""

from __future__ import annotations

from django.contrib import admin

from aipk_site.infra.admin import ServiceAdmin, ServiceModelForm, request_ip
from tenants_app.models import ModelRoute
from tenants_app.services.routes import route_create, route_delete, route_update


class ModelRouteForm(ServiceModelForm):
    class Meta:
        model = ModelRoute
        fields = ["tenant", "alias", "strategy", "candidates"]
        help_texts = {
            "candidates": 'In order: [{"provider": "openai-prod", "model": "gpt-4o-mini"}, …]',
            "tenant": "Empty: a global route, which a tenant's own route of the same alias "
            "shadows.",
        }

    def save_through_service(self, original):
        if original is None:
            return route_create(
                tenant=self.cleaned_data["tenant"],
                alias=self.cleaned_data["alias"],
                candidates=self.cleaned_data["candidates"],
                strategy=self.cleaned_data["strategy"],
                actor=self.actor,
                ip_address=self.ip_address,
            )
        return route_update(
            route=original,
            strategy=self.cleaned_data["strategy"],
            candidates=self.cleaned_data["candidates"],
            actor=self.actor,
            ip_address=self.ip_address,
        )


@admin.register(ModelRoute)
class ModelRouteAdmin(ServiceAdmin):
    form = ModelRouteForm
    list_display = ("alias", "scope", "strategy", "candidate_list", "updated_at")
    list_filter = ("strategy", ("tenant", admin.EmptyFieldListFilter), "tenant")
    search_fields = ("alias", "tenant__name", "tenant__slug")
    list_select_related = ("tenant",)
    ordering = ("alias", "tenant__name")
    autocomplete_fields = ("tenant",)
    readonly_fields = ("created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        # alias and scope identify the route; route_update changes only what it serves
        return (*self.readonly_fields, "tenant", "alias") if obj else self.readonly_fields

    @admin.display(description="scope", ordering="tenant__name")
    def scope(self, obj):
        return obj.tenant.slug if obj.tenant else "global"

    @admin.display(description="candidates")
    def candidate_list(self, obj):
        return " → ".join(f"{c.get('provider')}/{c.get('model')}" for c in obj.candidates)

    def delete_one(self, request, obj):
        route_delete(route=obj, actor=request.user, ip_address=request_ip(request))
