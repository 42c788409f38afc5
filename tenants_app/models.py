"""Tenants and everything a tenant owns: members, virtual keys, routes, usage, invoices.

Money is Decimal in the database (USD). The admission counters in the cache
count micro-dollars as integers, so no float rounding ever reaches a budget.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from fernet_fields import EncryptedTextField

from aipk_site.infra.choices import TextChoices


class Tenant(models.Model):
    """A team or app that calls the gateway. Its limits apply on top of each key's own."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=50, unique=True)
    active = models.BooleanField(default=True)
    # USD per calendar month (UTC); null = unlimited
    monthly_budget_usd = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    # defaults for the tenant as a whole (all its keys together); null = unlimited
    default_rpm = models.PositiveIntegerField(null=True, blank=True)
    default_tpm = models.PositiveIntegerField(null=True, blank=True)
    # mask emails, phone numbers and card numbers before a request leaves aipk
    pii_redaction = models.BooleanField(default=False)
    # request log: keep each request's body and response text (PII-redacted, capped,
    # kept REQUEST_LOG_BODY_RETENTION_DAYS); a key's own choice overrides this
    capture_bodies = models.BooleanField(default=False)
    # providers this tenant may use; empty = every enabled provider
    allowed_providers = models.ManyToManyField(
        "providers_app.Provider", blank=True, related_name="allowed_tenants"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(TextChoices):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class Membership(models.Model):
    """A user's role in a tenant: owner and admin manage, member uses, viewer reads."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    # granted by a single sign-on group (services/sso.py): follows the groups at every
    # sign-in and goes when the group goes; hand-made memberships are never touched by SSO
    sso_managed = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant"], name="one_membership_per_tenant")
        ]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.tenant_id}:{self.role}"


class SsoIdentity(models.Model):
    """The account an OpenID Connect subject signs in as: linked by (issuer, sub), never by
    email, which an identity provider may let users change. ``granted_staff`` and
    ``granted_superuser`` remember what SSO granted, so it revokes only that."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identity"
    )
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    # display only, refreshed at every sign-in
    email = models.CharField(max_length=254, blank=True)
    granted_staff = models.BooleanField(default=False)
    granted_superuser = models.BooleanField(default=False)
    last_sign_in_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="sso_identity_unique")
        ]

    def __str__(self) -> str:
        return f"{self.email or self.subject} ({self.issuer})"


class UnsupportedParams(TextChoices):
    """What the gateway does with a request field the chosen provider cannot take
    (kit/fields.py): refuse it with a 400 (the default), or drop the ones that only
    change the answer's wording and name them in ``x-aipk-dropped-params``."""

    REFUSE = "refuse"
    DROP = "drop"


class VirtualKey(models.Model):
    """A tenant's key for the gateway. Only a SHA-256 of the secret is stored; ``prefix``
    (the first characters) is what pages show. Limits left null fall back to the tenant's."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="virtual_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    # aliases and "<provider>/<model>" ids this key may call; empty = everything the tenant may
    allowed_models = models.JSONField(default=list, blank=True)
    rpm = models.PositiveIntegerField(null=True, blank=True)
    tpm = models.PositiveIntegerField(null=True, blank=True)
    max_concurrent_streams = models.PositiveIntegerField(null=True, blank=True)
    monthly_budget_usd = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    # exact-match response cache: opt-in per key (a request may also ask for it)
    cache_enabled = models.BooleanField(default=False)
    cache_ttl_seconds = models.PositiveIntegerField(default=300)
    unsupported_params = models.CharField(
        max_length=8, choices=UnsupportedParams.choices, default=UnsupportedParams.REFUSE
    )
    # request log body capture for this key: None follows the tenant's choice
    capture_bodies = models.BooleanField(null=True, blank=True, default=None)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["tenant", "name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class AdminToken(models.Model):
    """A bearer token for the management API that acts as its user (scripts, CI).
    Stored hashed like virtual keys; the secret is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="admin_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class RouteStrategy(TextChoices):
    FAILOVER = "failover"
    ROUND_ROBIN = "round_robin"
    CHEAPEST_FIRST = "cheapest_first"
    LOWEST_LATENCY = "lowest_latency"


class ModelRoute(models.Model):
    """An alias clients call by name → ordered candidates ``[{"provider": name, "model": id}]``.
    A tenant's own route shadows a global one (tenant null) with the same alias."""

    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="routes"
    )
    alias = models.CharField(max_length=100)
    strategy = models.CharField(
        max_length=20, choices=RouteStrategy.choices, default=RouteStrategy.FAILOVER
    )
    candidates = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["alias"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "alias"], name="route_alias_unique_per_tenant"
            ),
            models.UniqueConstraint(
                fields=["alias"], condition=Q(tenant__isnull=True), name="route_alias_unique_global"
            ),
        ]

    def __str__(self) -> str:
        return self.alias


class Pricing(models.Model):
    """USD per million tokens for a model. A row for one provider wins over the row for its
    provider type (provider null), which is how the bundled table is stored."""

    provider_type = models.CharField(max_length=32)
    provider = models.ForeignKey(
        "providers_app.Provider",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="prices",
    )
    model = models.CharField(max_length=200)
    input_per_million = models.DecimalField(max_digits=12, decimal_places=6)
    output_per_million = models.DecimalField(max_digits=12, decimal_places=6)
    # prompt-cache rates; unset = the input rate (a provider without a cache discount)
    cached_input_per_million = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True
    )
    cache_write_per_million = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True
    )
    # "bundled" (seeded from tenants_app/pricing_table.json) or "manual"
    source = models.CharField(max_length=10, default="manual")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider_type", "model"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "model"], name="price_unique_per_provider"),
            models.UniqueConstraint(
                fields=["provider_type", "model"],
                condition=Q(provider__isnull=True),
                name="price_unique_per_type",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider_type}/{self.model}"


class UsageStatus(TextChoices):
    SUCCESS = "success"
    ERROR = "error"  # the provider (or every candidate) failed
    REFUSED = "refused"  # admission said no: limit, budget, model not allowed
    CANCELLED = "cancelled"  # the client went away or cancelled mid-request


class UsageRecord(models.Model):
    """Exactly one per gateway request, whatever its outcome."""

    request_id = models.CharField(max_length=64, unique=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="usage_records")
    virtual_key = models.ForeignKey(
        VirtualKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_records"
    )
    provider = models.ForeignKey(
        "providers_app.Provider",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="usage_records",
    )
    # names kept as text too, so records stay readable after a provider is deleted
    provider_name = models.CharField(max_length=64, blank=True)
    credential_id = models.CharField(max_length=32, blank=True)  # "key:<id>" / "oauth:<id>"
    model = models.CharField(max_length=200, blank=True)
    alias = models.CharField(max_length=100, blank=True)
    endpoint = models.CharField(max_length=32, blank=True)  # chat.completions, messages, ws
    # the caller's end-user id (OpenAI ``user``, Anthropic ``metadata.user_id``), kept for
    # attribution: which of an app's users spent what
    end_user = models.CharField(max_length=256, blank=True, default="")
    # prompt_tokens counts every input token, completion_tokens every output token; the
    # three details are parts of them, billed at their own rates (kit ``Usage``)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)  # read from the provider's cache
    cache_write_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    tokens_estimated = models.BooleanField(default=False)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    # for a cache hit: what the call would have cost
    cost_saved_usd = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    latency_ms = models.FloatField(default=0)
    ttft_ms = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=UsageStatus.choices)
    error_type = models.CharField(max_length=64, blank=True)
    cached = models.BooleanField(default=False)
    streamed = models.BooleanField(default=False)
    # the request log: every candidate tried, in order -- [{"provider", "credential_id",
    # "model", "status" ("success" | "error" | "skipped"), "error_type", "latency_ms",
    # "answered"}]; empty when the request was refused before any candidate
    attempts = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="usage_tenant_time"),
            models.Index(fields=["virtual_key", "created_at"], name="usage_key_time"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.status}"


class RequestBody(models.Model):
    """What a request sent and got back, for the request log, when its key or tenant
    captures bodies (``capture_bodies``). One per usage row (same ``request_id``), written
    off the request path by aipk_site/gateway/request_bodies.py: PII-redacted, key-shaped
    strings masked, each side cut to REQUEST_LOG_BODY_MAX_BYTES; of the request's headers,
    only an allow-list's values (request_bodies.SHOWN_HEADERS), the others by name. Deleted
    by the retention run once ``expires_at`` has passed."""

    request_id = models.CharField(max_length=64, unique=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="request_bodies")
    # the request as the gateway parsed it (model, messages, tools, options), JSON text
    request = models.TextField(blank=True)
    request_truncated = models.BooleanField(default=False)
    # the HTTP request's headers: {name: value, or "(not shown)" outside the allow-list}
    headers = models.JSONField(default=dict, blank=True)
    # the answer's text (a stream's: up to the cap)
    response = models.TextField(blank=True)
    response_truncated = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.request_id


class StoredResponse(models.Model):
    """A response of ``POST /v1/responses`` kept so that a later request of the same
    tenant can continue it (``previous_response_id``) or read it back (``GET
    /v1/responses/{id}``). Written off the request path by the gateway's batched writer
    (aipk_site/gateway/response_store.py); deleted by the retention run after
    RESPONSES_RETENTION_DAYS."""

    response_id = models.CharField(max_length=64, unique=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="stored_responses")
    virtual_key = models.ForeignKey(
        VirtualKey,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="stored_responses",
    )
    model = models.CharField(max_length=200, blank=True)
    # the conversation a continuation starts from: earlier turns, this request's input
    # items and this response's output items, in the Responses API's item shapes
    items = models.JSONField(default=list)
    # the response object as the client received it (what GET answers)
    response = models.JSONField(default=dict)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.response_id


class Invoice(models.Model):
    """One per tenant per month. ``lines`` itemise by provider and model:
    ``[{provider, model, requests, prompt_tokens, completion_tokens, cost_usd}]``."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invoices")
    period = models.DateField(help_text="first day of the month")
    total_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    lines = models.JSONField(default=list)
    # a month that has ended is final; the current month's invoice is a draft, regenerated
    final = models.BooleanField(default=False)
    generated_at = models.DateTimeField()

    class Meta:
        ordering = ["-period", "tenant"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "period"], name="one_invoice_per_month")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.period:%Y-%m}"


class AuditEvent(models.Model):
    """Who changed what, when and from where. ``changes`` never holds a secret."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # who acted when there is no user: "system", "celery", "oauth-callback", ...
    actor_label = models.CharField(max_length=150, blank=True)
    # the tenant the change belongs to, so tenant admins can read their own audit log
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    action = models.CharField(max_length=100, db_index=True)
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id}"


# -- alerts (docs/MONITORING.md, "Alerts") --------------------------------------------------


class AlertKind(TextChoices):
    """What an alert is about. The value is the ``event`` a receiver sees."""

    BUDGET_THRESHOLD = "budget.threshold"
    CREDENTIAL_REAUTH = "credential.reauth_required"
    PROVIDER_DEGRADED = "provider.degraded"
    PROVIDER_RECOVERED = "provider.recovered"
    ROTATION_GRACE_ENDING = "key_rotation.grace_ending"
    TEST = "test"


class ChannelKind(TextChoices):
    WEBHOOK = "webhook"  # JSON POST signed with HMAC-SHA256 (x-aipk-signature)
    SLACK = "slack"  # a Slack-compatible incoming webhook: {"text": ...}
    EMAIL = "email"  # Django's mail backend, to a list of addresses


class AlertChannel(models.Model):
    """Where a tenant's (or, with no tenant, the organisation's) alerts go. A webhook's
    signing secret is generated by aipk, encrypted at rest, shown once on creation and
    by its last four characters after."""

    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="alert_channels"
    )
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=ChannelKind.choices)
    # a URL (webhook, slack) or comma-separated email addresses (email); encrypted: a
    # Slack or webhook URL often carries its own bearer token in the path
    target = EncryptedTextField()
    signing_secret = EncryptedTextField(blank=True, default="")
    secret_last4 = models.CharField(max_length=4, blank=True)
    enabled = models.BooleanField(default=True)
    # AlertKind values this channel receives; empty = every kind
    events = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def __repr__(self) -> str:
        return f"<AlertChannel {self.pk} {self.name!r} {self.kind} …{self.secret_last4}>"


class DeliveryStatus(TextChoices):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class AlertDelivery(models.Model):
    """One alert to one channel, and how its delivery went: the audit trail of alerting.
    ``dedup_key`` names the occurrence (e.g. a key's 80 % of May's budget), unique per
    channel, so the same crossing is never sent twice."""

    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    # the tenant the event belongs to (None: an organisation-wide event)
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="alert_deliveries"
    )
    kind = models.CharField(max_length=40, choices=AlertKind.choices)
    dedup_key = models.CharField(max_length=200)
    subject = models.CharField(max_length=300)
    # ids, names, labels and last-four only: never a secret
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "dedup_key"], name="one_alert_per_occurrence_per_channel"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} → {self.channel_id}: {self.status}"
