"""The Django admin for tenants and what they own.

Every write goes through the tenants_app services (tenants, members, keys,
routes, pricing), so it is validated and audited exactly like the same change
made through the management API. Virtual keys and admin tokens are shown by
prefix only; their secrets exist once, in the message after they are created.
Usage records, invoices and the audit log are read-only.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.utils import timezone
from django.utils.html import format_html

from aipk_site.infra.admin import (
    ReadOnlyAdmin,
    ServiceAdmin,
    ServiceModelForm,
    audited_delete,
    report,
    report_error,
    request_ip,
)
from aipk_site.infra.errors import AipkError
from tenants_app.models import (
    AdminToken,
    AuditEvent,
    Invoice,
    Membership,
    ModelRoute,
    Pricing,
    Tenant,
    UsageRecord,
    VirtualKey,
)
from tenants_app.services.keys import (
    KEY_FIELDS,
    admin_token_create,
    admin_token_revoke,
    virtual_key_create,
    virtual_key_revoke,
    virtual_key_update,
)
from tenants_app.services.pricing import pricing_delete, pricing_set
from tenants_app.services.routes import route_create, route_delete, route_update
from tenants_app.services.tenants import (
    TENANT_FIELDS,
    member_add,
    member_remove,
    member_update,
    tenant_create,
    tenant_delete,
    tenant_update,
)

# --------------------------------------------------------------------------- tenants


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
    list_display = ("user", "tenant", "role", "created_at")
    list_filter = ("role", "tenant")
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


# --------------------------------------------------------------------------- virtual keys


def _key_status(obj) -> str:
    if obj.revoked_at is not None:
        return "revoked"
    if obj.expires_at is not None and obj.expires_at <= timezone.now():
        return "expired"
    return "active"


class VirtualKeyForm(ServiceModelForm):
    class Meta:
        model = VirtualKey
        fields = ["tenant", *KEY_FIELDS]

    def save_through_service(self, original):
        if original is None:
            fields = {name: self.cleaned_data[name] for name in KEY_FIELDS if name != "name"}
            key, secret = virtual_key_create(
                tenant=self.cleaned_data["tenant"],
                name=self.cleaned_data["name"],
                actor=self.actor,
                ip_address=self.ip_address,
                **fields,
            )
            # handed to VirtualKeyAdmin.response_add, which shows it once; never stored
            self.new_secret = secret
            return key
        return virtual_key_update(
            key=original,
            actor=self.actor,
            ip_address=self.ip_address,
            **self.changed_values(KEY_FIELDS),
        )


class SecretOnceMixin:
    """After an add, show the new secret in one message. It lives only in that message."""

    secret_noun = "secret"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        secret = getattr(form, "new_secret", None)
        if secret:
            self.message_user(
                request,
                format_html(
                    "The {} for “{}” is <code>{}</code> — copy it now: "
                    "it is stored only as a hash and will not be shown again.",
                    self.secret_noun,
                    obj,
                    secret,
                ),
                messages.WARNING,
            )


@admin.register(VirtualKey)
class VirtualKeyAdmin(SecretOnceMixin, ServiceAdmin):
    form = VirtualKeyForm
    secret_noun = "virtual key"
    list_display = (
        "name",
        "tenant",
        "prefix",
        "status",
        "rpm",
        "tpm",
        "monthly_budget_usd",
        "cache_enabled",
        "expires_at",
        "last_used_at",
        "created_at",
    )
    list_filter = ("tenant", "cache_enabled", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "prefix", "tenant__name", "tenant__slug")
    list_select_related = ("tenant",)
    ordering = ("tenant__name", "name", "id")
    date_hierarchy = "created_at"
    autocomplete_fields = ("tenant",)
    readonly_fields = ("prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke_selected"]

    def get_readonly_fields(self, request, obj=None):
        return ("tenant", *self.readonly_fields) if obj is not None else ()

    def has_change_permission(self, request, obj=None):
        # a revoked key cannot be changed (virtual_key_update refuses): view it only
        if obj is not None and obj.revoked_at is not None:
            return False
        return super().has_change_permission(request, obj)

    # Revoke instead: usage records keep pointing at the key. A key is deleted only
    # with its tenant (tenant_delete also drops it from the key cache at once).
    deleted_only_with_owner = True

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="status")
    def status(self, obj):
        return _key_status(obj)

    @admin.action(description="Revoke selected virtual keys")
    def revoke_selected(self, request, queryset):
        for key in queryset.select_related("tenant"):
            was_revoked = key.revoked_at is not None
            try:
                virtual_key_revoke(key=key, actor=request.user, ip_address=request_ip(request))
            except AipkError as error:
                report_error(self, request, key, error)
                continue
            report(self, request, key, True, "already revoked" if was_revoked else "revoked")


class AdminTokenForm(ServiceModelForm):
    class Meta:
        model = AdminToken
        fields = ["user", "name"]

    def save_through_service(self, original):
        token, secret = admin_token_create(
            user=self.cleaned_data["user"],
            name=self.cleaned_data["name"],
            actor=self.actor,
            ip_address=self.ip_address,
        )
        self.new_secret = secret
        return token


@admin.register(AdminToken)
class AdminTokenAdmin(SecretOnceMixin, ServiceAdmin):
    form = AdminTokenForm
    secret_noun = "admin token"
    list_display = ("name", "user", "prefix", "status", "created_at", "last_used_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "prefix", "user__username")
    list_select_related = ("user",)
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    autocomplete_fields = ("user",)
    actions = ["revoke_selected"]

    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ()

    def has_change_permission(self, request, obj=None):
        # no service renames a token: once created it is only looked at, or revoked
        if obj is not None:
            return False
        return super().has_change_permission(request, obj)

    def delete_one(self, request, obj):
        # tokens are looked up in the database on every use, so deleting one is immediate;
        # revoking keeps the row (and its name in the list) instead
        audited_delete(request, obj, action="admin_token.delete", name=obj.name, prefix=obj.prefix)

    @admin.display(description="status")
    def status(self, obj):
        return "revoked" if obj.revoked_at else "active"

    @admin.action(description="Revoke selected admin tokens")
    def revoke_selected(self, request, queryset):
        for token in queryset.select_related("user"):
            was_revoked = token.revoked_at is not None
            admin_token_revoke(token=token, actor=request.user, ip_address=request_ip(request))
            report(self, request, token, True, "already revoked" if was_revoked else "revoked")


# --------------------------------------------------------------------------- routes, pricing


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
            from providers_app.models import ProviderType

            return forms.ChoiceField(choices=ProviderType.choices, label="Provider type")
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def delete_one(self, request, obj):
        pricing_delete(pricing=obj, actor=request.user)


# --------------------------------------------------------------------------- read-only records


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
