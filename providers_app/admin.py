"""The Django admin for providers and the credentials aipk holds for them.

Secrets are write-only here. An API key's secret and a provider's OAuth client
secret are typed into password fields that are never filled back in; OAuth
tokens, PKCE verifiers and device codes are not form fields at all, so no page
and no HTML source ever carries them: a credential shows as its label and last
four characters. Writes go through the provider services (audited); the few
plain fields without a service (a key's label and tenant, a credential's
account label) are saved and audited by ``audited_save``.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin
from django.db import models
from django.db.models import Count, Q

from aipk_site.infra.audit import audit_record
from providers_app.kit.errors import ProviderError
from providers_app.models import (
    ApiKey,
    DiscoveredModel,
    HealthAlert,
    HealthCheck,
    OAuthCredential,
    OAuthFlow,
    Provider,
)
from providers_app.services.credentials import api_key_add, api_key_set_state, api_key_test_live
from providers_app.services.discovery import discover_models
from providers_app.services.health import check_provider_health
from providers_app.services.oauth import ensure_fresh_token
from providers_app.services.providers import EDITABLE_FIELDS, provider_create, provider_update
from tenants_app.admin_base import (
    ReadOnlyAdmin,
    ServiceAdmin,
    ServiceModelForm,
    audited_delete,
    audited_save,
    report,
)

WRITE_ONLY = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})


def _masked(last4: str) -> str:
    return f"…{last4}" if last4 else "—"


# --------------------------------------------------------------------------- providers


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
    service_field_names = {"oauth_client_secret": "new_oauth_client_secret"}

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
        return f"set ({_masked(secret[-4:])})" if secret else "none"

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


# --------------------------------------------------------------------------- API keys


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
        return _masked(obj.last4)

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


# --------------------------------------------------------------------------- OAuth


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
        return _masked(obj.last4)

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
        from providers_app.kit.oauth import OAuthError

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
        from django.utils import timezone

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


# --------------------------------------------------------------------------- models, health


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
