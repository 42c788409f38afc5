"""Tenants and their members; a member is removed one at a time, so a refusal (a
tenant's last owner) shows as such."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count

from aipk_site.infra.admin import ReadOnlyAdmin, ServiceAdmin, ServiceModelForm, request_ip
from tenants_app.models import Membership, SsoIdentity, Tenant
from tenants_app.services.tenants import (
    TENANT_FIELDS,
    member_add,
    member_remove,
    member_update,
    tenant_create,
    tenant_delete,
    tenant_update,
)


class TenantForm(ServiceModelForm):
    class Meta:
        model = Tenant
        fields = ["name", "slug", *TENANT_FIELDS[1:], "allowed_providers"]

    def save_through_service(self, original):
        fields = self.changed_values([*TENANT_FIELDS, "allowed_providers"])
        if "allowed_providers" in fields:
            fields["allowed_providers"] = [p.name for p in fields["allowed_providers"]]
        if original is None:
            fields.pop("name", None)
            return tenant_create(
                name=self.cleaned_data["name"],
                slug=self.cleaned_data.get("slug") or "",
                actor=self.actor,
                ip_address=self.ip_address,
                **fields,
            )
        return tenant_update(
            tenant=original, actor=self.actor, ip_address=self.ip_address, **fields
        )


@admin.register(Tenant)
class TenantAdmin(ServiceAdmin):
    form = TenantForm
    list_display = (
        "name",
        "slug",
        "active",
        "monthly_budget_usd",
        "default_rpm",
        "default_tpm",
        "pii_redaction",
        "key_count",
        "created_at",
    )
    list_filter = ("active", "pii_redaction", "allowed_providers")
    search_fields = ("name", "slug")
    ordering = ("name",)
    date_hierarchy = "created_at"
    autocomplete_fields = ("allowed_providers",)
    readonly_fields = ("created_at", "updated_at")

    def get_prepopulated_fields(self, request, obj=None):
        return {"slug": ("name",)} if obj is None else {}

    def get_readonly_fields(self, request, obj=None):
        # the slug is how the API and audit log name a tenant: fixed once created
        return (*self.readonly_fields, "slug") if obj is not None else self.readonly_fields

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_key_count=Count("virtual_keys"))

    @admin.display(description="virtual keys", ordering="_key_count")
    def key_count(self, obj):
        return obj._key_count

    def delete_one(self, request, obj):
        tenant_delete(tenant=obj, actor=request.user, ip_address=request_ip(request))


class MembershipForm(ServiceModelForm):
    param_fields = {"username": "user"}

    class Meta:
        model = Membership
        fields = ["tenant", "user", "role"]

    def save_through_service(self, original):
        if original is None:
            return member_add(
                tenant=self.cleaned_data["tenant"],
                user=self.cleaned_data["user"],
                role=self.cleaned_data["role"],
                actor=self.actor,
                ip_address=self.ip_address,
            )
        return member_update(
            membership=original,
            role=self.cleaned_data["role"],
            actor=self.actor,
            ip_address=self.ip_address,
        )


@admin.register(Membership)
class MembershipAdmin(ServiceAdmin):
    form = MembershipForm
    list_display = ("user", "tenant", "role", "sso_managed", "created_at")
    list_filter = ("role", "sso_managed", "tenant")
    search_fields = ("user__username", "user__email", "tenant__name", "tenant__slug")
    list_select_related = ("user", "tenant")
    ordering = ("tenant__name", "user__username")
    autocomplete_fields = ("tenant", "user")
    readonly_fields = ("created_at",)

    def get_readonly_fields(self, request, obj=None):
        # a membership moves by removing and adding it, as in the API
        return (*self.readonly_fields, "tenant", "user") if obj else self.readonly_fields

    def get_actions(self, request):
        # member_remove may refuse (a tenant's last owner): delete one at a time, where a
        # refusal is shown as such rather than under a "deleted" banner
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_one(self, request, obj):
        member_remove(membership=obj, actor=request.user, ip_address=request_ip(request))


@admin.register(SsoIdentity)
class SsoIdentityAdmin(ReadOnlyAdmin):
    """Which identity-provider subject signs in as which user (services/sso.py writes
    them); gone with the user, which is also how an account is unlinked."""

    list_display = (
        "user",
        "email",
        "issuer",
        "subject",
        "granted_staff",
        "granted_superuser",
        "last_sign_in_at",
    )
    list_filter = ("issuer", "granted_staff", "granted_superuser")
    search_fields = ("user__username", "email", "subject")
    list_select_related = ("user",)
    ordering = ("-last_sign_in_at", "-id")
