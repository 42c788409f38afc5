"""Virtual keys and admin tokens, shown by prefix only: their secrets exist once, in the
message after they are created. A virtual key is revoked, never deleted on its own."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html

from aipk_site.infra.admin import (
    ServiceAdmin,
    ServiceModelForm,
    audited_delete,
    report,
    report_error,
    request_ip,
)
from aipk_site.infra.errors import AipkError
from tenants_app.models import AdminToken, VirtualKey
from tenants_app.services.keys import (
    KEY_FIELDS,
    admin_token_create,
    admin_token_revoke,
    virtual_key_create,
    virtual_key_revoke,
    virtual_key_update,
)


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
