"""Provider accounts and the credentials aipk holds for them.

Secrets (API keys, OAuth tokens, client secrets, PKCE verifiers, device codes)
are Fernet-encrypted at rest with django-fernet-fields (FERNET_KEYS: the first
key encrypts, all decrypt; ``manage.py rotate_fernet_keys`` re-encrypts).
Only a label and the last four characters are ever shown.

Live pool state that several processes must agree on -- cool-downs, backoff,
consecutive failures, circuit breakers -- lives in the cache (Redis in
production); these rows hold what must survive a restart: which credentials
exist, which are invalid or retired, and their history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models
from fernet_fields import EncryptedTextField

from aipk_site.infra.choices import TextChoices
from providers_app.kit.providers import PROFILES

# One choice per registered provider profile (kit/providers), in registry order:
# a new provider's module and registry entry are all the type list needs (plus the
# choices-only migration Django then writes). mypy sees a class with no members.
if TYPE_CHECKING:

    class ProviderType(TextChoices):
        pass

else:
    ProviderType = TextChoices(
        "ProviderType",
        [
            (name.upper().replace("-", "_"), (name, profile.label))
            for name, profile in PROFILES.items()
        ],
        module=__name__,
    )


class KeyStrategy(TextChoices):
    ROUND_ROBIN = "round_robin", "Round robin"
    HEALTH_AWARE = "health_aware", "Health-aware"


class Provider(models.Model):
    """One account of one provider type, e.g. "openai-prod" or "groq" (openai-compatible)."""

    # Public name: models are addressed as "<name>/<model id>".
    name = models.SlugField(max_length=64, unique=True)
    type = models.CharField(max_length=32, choices=ProviderType.choices)
    base_url = models.URLField(blank=True, help_text="Empty: the provider's public endpoint.")
    default_model = models.CharField(max_length=200, blank=True)
    # Type-specific settings (organization, project_id, site_url, site_name,
    # rate_limit_tier, ...), validated per type by services.provider_settings.
    settings = models.JSONField(default=dict, blank=True)
    timeout_seconds = models.FloatField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    key_strategy = models.CharField(
        max_length=20, choices=KeyStrategy.choices, default=KeyStrategy.HEALTH_AWARE
    )
    # OAuth client configuration entered by an admin; aipk ships no client id of its own.
    oauth_client_id = models.CharField(max_length=255, blank=True)
    oauth_client_secret = EncryptedTextField(blank=True, default="")
    oauth_authorize_url = models.URLField(blank=True)
    oauth_token_url = models.URLField(blank=True)
    oauth_device_url = models.URLField(blank=True)
    oauth_scopes = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.type})"


class CredentialUsage(models.Model):
    """How a credential has been doing: copied from the shared pool state and the
    metrics by a periodic task (services/credential_state.py), never per request."""

    failure_count = models.PositiveIntegerField(default=0)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_error_type = models.CharField(max_length=64, blank=True)
    request_count = models.PositiveBigIntegerField(default=0)
    error_count = models.PositiveBigIntegerField(default=0)

    class Meta:
        abstract = True


class ApiKey(CredentialUsage):
    class State(TextChoices):
        ACTIVE = "active", "Active"
        COOLING_DOWN = "cooling_down", "Cooling down"
        INVALID = "invalid", "Invalid"  # the provider refused it (a permanent error)
        DISABLED = "disabled", "Disabled"  # a person switched it off
        RETIRED = "retired", "Retired"

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="api_keys")
    # null = shared by the organisation; set = only this tenant's requests may use it
    tenant = models.ForeignKey(
        "tenants_app.Tenant",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="provider_api_keys",
    )
    label = models.CharField(max_length=100)
    secret = EncryptedTextField()
    last4 = models.CharField(max_length=4)
    state = models.CharField(max_length=20, choices=State.choices, default=State.ACTIVE)
    cooling_down_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    # set when a rotation replaced this key: it keeps serving until then
    retire_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["provider", "created_at", "id"]

    def __str__(self) -> str:
        return f"{self.label} (…{self.last4})"

    def __repr__(self) -> str:
        return f"<ApiKey {self.pk} {self.label!r} …{self.last4} {self.state}>"


class OAuthCredential(CredentialUsage):
    class State(TextChoices):
        ACTIVE = "active", "Active"
        NEEDS_REAUTH = "needs_reauth", "Needs re-authorisation"
        REVOKED = "revoked", "Revoked"

    provider = models.ForeignKey(
        Provider, on_delete=models.CASCADE, related_name="oauth_credentials"
    )
    # null = shared by the organisation; set = only this tenant's requests may use it
    tenant = models.ForeignKey(
        "tenants_app.Tenant",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="provider_oauth_credentials",
    )
    account_label = models.CharField(max_length=200)
    access_token = EncryptedTextField()
    refresh_token = EncryptedTextField(blank=True, default="")
    client_id = models.CharField(max_length=255, blank=True)
    client_secret = EncryptedTextField(blank=True, default="")
    scopes = models.CharField(max_length=500, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # Qwen hands out a per-account API host with its tokens
    resource_url = models.CharField(max_length=255, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.ACTIVE)
    refresh_count = models.PositiveIntegerField(default=0)
    last_refresh_at = models.DateTimeField(null=True, blank=True)
    last_refresh_error = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["provider", "created_at", "id"]

    def __str__(self) -> str:
        return f"{self.account_label} (…{self.last4})"

    def __repr__(self) -> str:
        return f"<OAuthCredential {self.pk} {self.account_label!r} …{self.last4} {self.state}>"


class OAuthFlow(models.Model):
    """One pending authorisation: single use, expires after ten minutes."""

    class Kind(TextChoices):
        AUTHORIZATION_CODE = "authorization_code", "Authorization code + PKCE"
        DEVICE_CODE = "device_code", "Device authorization"
        OPENROUTER_PKCE = "openrouter_pkce", "OpenRouter PKCE key exchange"

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="oauth_flows")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    state = models.CharField(max_length=128, unique=True)
    code_verifier = EncryptedTextField()
    redirect_uri = models.URLField(blank=True)
    device_code = EncryptedTextField(blank=True, default="")
    user_code = models.CharField(max_length=64, blank=True)
    verification_uri = models.URLField(blank=True)
    poll_interval = models.FloatField(default=5.0)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=200, blank=True)
    oauth_credential = models.ForeignKey(
        OAuthCredential, null=True, blank=True, on_delete=models.SET_NULL
    )
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for provider {self.provider_id}"

    def __repr__(self) -> str:
        used = bool(self.used_at)
        return f"<OAuthFlow {self.pk} {self.kind} provider={self.provider_id} used={used}>"


class DiscoveredModel(models.Model):
    """A model a provider offers, as last discovered (or from the static fallback)."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    model_id = models.CharField(max_length=200)
    name = models.CharField(max_length=200)
    context_window = models.PositiveIntegerField(null=True, blank=True)
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    supports_streaming = models.BooleanField(default=True)
    supports_tools = models.BooleanField(default=True)
    input_price_per_million = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True
    )
    output_price_per_million = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True
    )
    source = models.CharField(max_length=10, default="fetched")
    discovered_at = models.DateTimeField()

    class Meta:
        ordering = ["provider", "model_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model_id"], name="unique_model_per_provider"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider.name}/{self.model_id}"


class HealthCheck(models.Model):
    """One health probe of a provider, or of one of its credentials."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="health_checks")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.CASCADE)
    oauth_credential = models.ForeignKey(
        OAuthCredential, null=True, blank=True, on_delete=models.CASCADE
    )
    healthy = models.BooleanField()
    latency_ms = models.FloatField()
    error_type = models.CharField(max_length=64, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    checked_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-checked_at"]

    def __str__(self) -> str:
        state = "healthy" if self.healthy else "unhealthy"
        return f"{state} at {self.checked_at:%Y-%m-%d %H:%M:%S}"


class HealthAlert(models.Model):
    """A change of health state (healthy → unhealthy or back)."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="health_alerts")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.CASCADE)
    oauth_credential = models.ForeignKey(
        OAuthCredential, null=True, blank=True, on_delete=models.CASCADE
    )
    healthy = models.BooleanField()
    message = models.CharField(max_length=500)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.message
