"""Forms behind the console's tenant pages.

They only turn HTML form fields into the keyword arguments the services take
(blank → None, text lists → lists, "provider/model" lines → candidates) and
bound them the way the management API's schemas do. The business rules (taken
slugs, unknown providers, the last owner, expiry in the past...) stay in the
services; their refusal lands on the field it names via ``add_service_error``
(aipk_site/infra/forms.py).
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from django import forms
from django.utils import timezone

from aipk_site.infra.errors import AipkError, InvalidRequest
from aipk_site.infra.forms import ServiceErrorsMixin
from aipk_site.infra.time_ranges import RANGE_LABELS, RANGES, parse_moment
from providers_app.models import Provider, ProviderType
from tenants_app.models import (
    AlertChannel,
    AlertKind,
    ChannelKind,
    Role,
    RouteStrategy,
    UnsupportedParams,
)
from tenants_app.services import billing
from tenants_app.services.alerts.channels import SUBSCRIBABLE, target_display

# the same bounds as the management API's schemas (PostgreSQL integer columns)
MAX_INT = 2_147_483_647
MAX_CACHE_TTL = 30 * 24 * 3600
# a usage page draws one bar per day: a year is plenty and keeps the charts legible
MAX_USAGE_DAYS = 366


def _limit_field(label: str, help_text: str = "") -> forms.IntegerField:
    return forms.IntegerField(
        label=label, required=False, min_value=1, max_value=MAX_INT, help_text=help_text
    )


def _budget_field(label: str = "Monthly budget (USD)") -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        required=False,
        min_value=0,
        max_digits=12,
        decimal_places=4,
        help_text="Empty: no budget.",
    )


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in re.split(r"[,\n]", value or "") if item.strip()]


def _provider_choices() -> list[tuple[str, str]]:
    return [
        (name, name) for name in Provider.objects.order_by("name").values_list("name", flat=True)
    ]


class TenantSettingsForm(ServiceErrorsMixin, forms.Form):
    """What an admin may change about their tenant; ``staff=True`` adds the
    organisation's policy fields (active, allowed providers), as the API does."""

    name = forms.CharField(max_length=100)
    default_rpm = _limit_field("Requests per minute", "All keys together. Empty: unlimited.")
    default_tpm = _limit_field("Tokens per minute", "All keys together. Empty: unlimited.")
    monthly_budget_usd = _budget_field()
    pii_redaction = forms.BooleanField(
        label="Redact PII",
        required=False,
        help_text="Mask emails, phone and card numbers before a request leaves aipk.",
    )
    capture_bodies = forms.BooleanField(
        label="Capture request bodies",
        required=False,
        help_text="Keep each request's body and answer in the request log (PII-redacted, "
        "capped, kept for a limited time). A key may choose otherwise.",
    )

    STAFF_FIELDS = ("active", "allowed_providers")

    def __init__(self, *args: Any, staff: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if staff:
            self.fields["active"] = forms.BooleanField(label="Active", required=False)
            self.fields["allowed_providers"] = forms.MultipleChoiceField(
                label="Allowed providers",
                required=False,
                choices=_provider_choices(),
                widget=forms.CheckboxSelectMultiple,
                help_text="None ticked: every enabled provider.",
            )

    @classmethod
    def initial_for(cls, tenant) -> dict[str, Any]:
        return {
            "name": tenant.name,
            "default_rpm": tenant.default_rpm,
            "default_tpm": tenant.default_tpm,
            "monthly_budget_usd": tenant.monthly_budget_usd,
            "pii_redaction": tenant.pii_redaction,
            "capture_bodies": tenant.capture_bodies,
            "active": tenant.active,
            "allowed_providers": [p.name for p in tenant.allowed_providers.all()],
        }


class TenantCreateForm(TenantSettingsForm):
    slug = forms.CharField(
        max_length=50,
        required=False,
        help_text="Lower-case letters, digits, '-' or '_'. Empty: made from the name.",
    )
    owner = forms.CharField(
        label="First owner",
        max_length=150,
        required=False,
        help_text="Username. Empty: no owner yet (staff manage it).",
    )

    field_order = ["name", "slug", "owner"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, staff=True, **kwargs)
        # a new tenant is active; switching it off is a later, deliberate edit
        del self.fields["active"]

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"].strip()
        if slug and not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", slug):
            raise forms.ValidationError("Use lower-case letters, digits, '-' or '_'.")
        return slug

    def clean_owner(self):
        return (
            _active_user(self.cleaned_data["owner"].strip()) if self.cleaned_data["owner"] else None
        )


def _active_user(username: str):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise forms.ValidationError(f"No active user {username!r}.")
    return user


def _role_choices(may_grant_owner: bool) -> list[tuple[str, str]]:
    # only owners make owners: the others never see the choice
    return [(r.value, r.label) for r in Role if may_grant_owner or r != Role.OWNER]


class MemberAddForm(ServiceErrorsMixin, forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)

    def __init__(self, *args: Any, may_grant_owner: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the select offers only what this user may grant; the field still accepts every
        # role, so asking for more is the view's 403 (as in the API), not a form error
        self.fields["role"].widget.choices = _role_choices(may_grant_owner)

    def clean_username(self):
        return _active_user(self.cleaned_data["username"].strip())


class MemberRoleForm(forms.Form):
    # every role is accepted here; whether this user may grant it is the view's check
    role = forms.ChoiceField(choices=Role.choices)


class KeyForm(ServiceErrorsMixin, forms.Form):
    name = forms.CharField(max_length=100)
    allowed_models = forms.CharField(
        label="Allowed models",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Aliases or provider/model ids, comma or line separated. Empty: everything "
        "the tenant may use.",
    )
    rpm = _limit_field("Requests per minute", "Empty: the tenant's limit.")
    tpm = _limit_field("Tokens per minute", "Empty: the tenant's limit.")
    max_concurrent_streams = _limit_field("Concurrent streams", "Empty: unlimited.")
    monthly_budget_usd = _budget_field()
    cache_enabled = forms.BooleanField(label="Response cache", required=False)
    cache_ttl_seconds = forms.IntegerField(
        label="Cache TTL (seconds)", min_value=1, max_value=MAX_CACHE_TTL, initial=300
    )
    unsupported_params = forms.ChoiceField(
        label="Unsupported parameters",
        choices=UnsupportedParams.choices,
        initial=UnsupportedParams.REFUSE,
        required=False,  # a form without it keeps the default: refuse
        help_text="A field the provider cannot take: refuse the request (400), or drop the "
        "field when only the answer's wording depends on it (named in the "
        "x-aipk-dropped-params header).",
    )
    capture_bodies = forms.TypedChoiceField(
        label="Capture request bodies",
        choices=[("", "As the tenant chooses"), ("on", "Always"), ("off", "Never")],
        # the three states of the model's nullable flag: None follows the tenant
        coerce=lambda choice: {"on": True, "off": False}.get(choice),
        empty_value=None,
        required=False,
        help_text="Keep this key's request bodies and answers in the request log.",
    )
    expires_at = forms.DateTimeField(
        label="Expires (UTC)",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Empty: never.",
    )

    def clean_allowed_models(self) -> list[str]:
        models = _split_list(self.cleaned_data["allowed_models"])
        if len(models) > 500:
            raise forms.ValidationError("At most 500 models.")
        too_long = [m for m in models if len(m) > 200]
        if too_long:
            raise forms.ValidationError(f"{too_long[0][:40]!r}…: at most 200 characters.")
        return models

    def clean_unsupported_params(self) -> str:
        return self.cleaned_data["unsupported_params"] or UnsupportedParams.REFUSE

    def clean_expires_at(self) -> dt.datetime | None:
        # console times are UTC (TIME_ZONE), as the page says
        value = self.cleaned_data["expires_at"]
        if value is not None and timezone.is_naive(value):
            value = timezone.make_aware(value, dt.UTC)
        return value

    @classmethod
    def initial_for(cls, key) -> dict[str, Any]:
        return {
            "name": key.name,
            "allowed_models": ", ".join(key.allowed_models),
            "rpm": key.rpm,
            "tpm": key.tpm,
            "max_concurrent_streams": key.max_concurrent_streams,
            "monthly_budget_usd": key.monthly_budget_usd,
            "cache_enabled": key.cache_enabled,
            "cache_ttl_seconds": key.cache_ttl_seconds,
            "unsupported_params": key.unsupported_params,
            "capture_bodies": {True: "on", False: "off"}.get(key.capture_bodies, ""),
            # the picker shows minutes: unchanged means equal to the minute
            "expires_at": key.expires_at and key.expires_at.replace(second=0, microsecond=0),
        }


class RouteForm(ServiceErrorsMixin, forms.Form):
    alias = forms.CharField(
        max_length=100, help_text="The model name clients ask for; no '/'.", strip=True
    )
    strategy = forms.ChoiceField(choices=RouteStrategy.choices, initial=RouteStrategy.FAILOVER)
    candidates = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="One provider/model per line, in order, e.g. openai-prod/gpt-4o-mini.",
    )

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if editing:
            # an alias is the route's name: changing it is a new route
            del self.fields["alias"]

    def clean_alias(self) -> str:
        alias = self.cleaned_data["alias"]
        if "/" in alias:
            raise forms.ValidationError("An alias must not contain '/'.")
        return alias

    def clean_candidates(self) -> list[dict[str, str]]:
        lines = [line.strip() for line in self.cleaned_data["candidates"].splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            raise forms.ValidationError("At least one candidate.")
        if len(lines) > 50:
            raise forms.ValidationError("At most 50 candidates.")
        candidates = []
        for number, line in enumerate(lines, start=1):
            # provider names are slugs, so the first '/' ends them; model ids may hold more
            provider, slash, model = line.partition("/")
            if not slash or not provider.strip() or not model.strip():
                raise forms.ValidationError(f"Line {number}: write provider/model, not {line!r}.")
            candidates.append({"provider": provider.strip(), "model": model.strip()})
        return candidates

    def add_service_error(self, error: AipkError) -> None:
        # "candidates.2.provider" → say which line, people count from 1
        match = re.match(r"candidates\.(\d+)", error.param or "")
        if match:
            message = re.sub(r"^candidates\.\d+(\.\w+)?:?\s*", "", error.message)
            self.add_error("candidates", f"Line {int(match.group(1)) + 1}: {message}")
            return
        super().add_service_error(error)

    @staticmethod
    def candidates_text(candidates: list[dict[str, str]]) -> str:
        return "\n".join(f"{c['provider']}/{c['model']}" for c in candidates)


class UsageRangeForm(forms.Form):
    """?from=…&to=… (the API's parameter names, so the CSV link can reuse them);
    both optional: this month up to today. ``start``/``end`` are the resolved days."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # "from" is a Python keyword, so these fields cannot be class attributes
        self.fields["from"] = forms.DateField(
            label="From", required=False, widget=forms.DateInput({"type": "date"})
        )
        self.fields["to"] = forms.DateField(
            label="To", required=False, widget=forms.DateInput({"type": "date"})
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        end = cleaned.get("to") or timezone.now().date()
        start = cleaned.get("from") or end.replace(day=1)
        if end < start:
            self.add_error("to", "Must not be before 'From'.")
        elif (end - start).days >= MAX_USAGE_DAYS:
            self.add_error("from", f"Pick at most {MAX_USAGE_DAYS} days.")
        cleaned["start"], cleaned["end"] = start, end
        return cleaned


class InvoiceGenerateForm(forms.Form):
    period = forms.CharField(
        label="Month",
        widget=forms.TextInput(attrs={"type": "month", "placeholder": "YYYY-MM"}),
        help_text="Recomputed from usage now; an ended month's invoice is final.",
    )

    def clean_period(self) -> dt.date:
        try:
            period = dt.datetime.strptime(self.cleaned_data["period"].strip(), "%Y-%m").date()
        except ValueError:
            raise forms.ValidationError("Write the month as YYYY-MM, e.g. 2025-01.") from None
        try:
            return billing.period_check(period)  # 9999-12 was a 500
        except InvalidRequest as error:
            raise forms.ValidationError(error.message.removeprefix("period: ")) from None


def _rate_field(label: str, *, required: bool = True, help_text: str = "") -> forms.DecimalField:
    # the Pricing columns: 12 digits, 6 after the point, never negative
    return forms.DecimalField(
        label=label,
        required=required,
        min_value=0,
        max_value=Decimal("999999.999999"),
        max_digits=12,
        decimal_places=6,
        help_text=help_text,
        widget=forms.NumberInput(attrs={"step": "any", "min": "0", "inputmode": "decimal"}),
    )


class PriceForm(ServiceErrorsMixin, forms.Form):
    """A price in USD per million tokens, for a provider type or one provider account.
    Editing keeps the row's identity (type, account, model): changing it is a new price."""

    provider_type = forms.ChoiceField(label="Provider type")
    provider = forms.ChoiceField(
        label="Provider account",
        required=False,
        help_text="Leave empty to price the model for every account of the type.",
    )
    model = forms.CharField(max_length=200, strip=True, help_text="The exact model id.")
    input_per_million = _rate_field("Input")
    output_per_million = _rate_field(
        "Output", help_text="Reasoning tokens are output and billed at this rate."
    )
    cached_input_per_million = _rate_field(
        "Cached read", required=False, help_text="Empty: the input rate (no cache discount)."
    )
    cache_write_per_million = _rate_field(
        "Cache write", required=False, help_text="Empty: the input rate."
    )

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if editing:
            for name in ("provider_type", "provider", "model"):
                del self.fields[name]
            return
        self.fields["provider_type"].choices = ProviderType.choices
        self.fields["provider"].choices = [("", "Every account of the type")] + [
            (p.name, f"{p.name} ({p.type})") for p in Provider.objects.order_by("name")
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        name = cleaned.get("provider")
        cleaned["provider"] = Provider.objects.filter(name=name).first() if name else None
        provider = cleaned["provider"]
        if provider is not None and cleaned.get("provider_type") not in (None, provider.type):
            wanted = cleaned["provider_type"]
            message = f"{provider.name} is a {provider.type} account, not {wanted}."
            self.add_error("provider", message)
        return cleaned


class CatalogueFilterForm(forms.Form):
    """The model catalogue's filters; every value is checked (a bad one is a message)."""

    q = forms.CharField(label="Search", required=False, max_length=200, strip=True)
    provider = forms.ChoiceField(label="Provider", required=False)
    capability = forms.ChoiceField(label="Capability", required=False)

    def __init__(self, *args: Any, providers: Any, capabilities: dict[str, str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.providers_by_pk = {str(p.pk): p for p in providers}
        self.fields["provider"].choices = [("", "All providers")] + [
            (pk, p.name) for pk, p in self.providers_by_pk.items()
        ]
        self.fields["capability"].choices = [("", "Any")] + list(capabilities.items())


# what each alert kind means, for the tick boxes (the values are what receivers see)
ALERT_KIND_LABELS: dict[str, str] = {
    AlertKind.BUDGET_THRESHOLD: "Budget threshold crossed (80 %, 100 %)",
    AlertKind.CREDENTIAL_REAUTH: "OAuth credential needs re-authorisation",
    AlertKind.PROVIDER_DEGRADED: "Provider degraded",
    AlertKind.PROVIDER_RECOVERED: "Provider recovered",
    AlertKind.ROTATION_GRACE_ENDING: "Key rotation's grace period ending",
}


class UnechoedTextInput(forms.TextInput):
    """A text box never filled back in: a webhook or Slack URL carries its own token, so
    a page re-shown with an error must not hold it (as the credentials form's secret)."""

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        return super().get_context(name, None, attrs)


class AlertChannelForm(ServiceErrorsMixin, forms.Form):
    """A channel's settings as the alert services take them; ``channel`` (editing) drops
    the kind (fixed at creation) and makes the target optional: empty keeps it."""

    name = forms.CharField(max_length=100, strip=True)
    kind = forms.ChoiceField(
        choices=ChannelKind.choices,
        initial=ChannelKind.WEBHOOK,
        help_text="Webhook: a signed JSON POST. Slack: a Slack-compatible incoming webhook. "
        "Email: the configured mail server.",
    )
    target = forms.CharField(
        max_length=1000,
        widget=UnechoedTextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        help_text="An http(s) URL (webhook, Slack) or comma-separated email addresses. "
        "Shown afterwards by its host and last four characters only.",
    )
    events = forms.MultipleChoiceField(
        label="Alert kinds",
        choices=[(kind, ALERT_KIND_LABELS[kind]) for kind in SUBSCRIBABLE],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="None ticked: every kind.",
    )
    enabled = forms.BooleanField(label="Enabled", required=False, initial=True)

    def __init__(self, *args: Any, channel: AlertChannel | None = None, **kwargs: Any) -> None:
        if channel is not None and not args and "initial" not in kwargs:
            kwargs["initial"] = {
                "name": channel.name,
                "events": channel.events,
                "enabled": channel.enabled,
            }
        super().__init__(*args, **kwargs)
        self.channel = channel
        if channel is not None:
            del self.fields["kind"]
            target = self.fields["target"]
            target.required = False
            target.help_text = (
                f"Now {target_display(channel)}. Empty: keep it; anything typed replaces it."
            )

    def service_fields(self) -> dict[str, Any]:
        """The keyword arguments for alert_channel_create / _update."""
        fields = dict(self.cleaned_data)
        if self.channel is not None and not fields.get("target"):
            fields.pop("target", None)
        return fields


def _moment(text: str, *, end_of_day: bool) -> dt.datetime:
    moment = parse_moment(text, end_of_day=end_of_day)
    if moment is None:
        raise forms.ValidationError(
            "Write an ISO date or time, e.g. 2026-01-31 or 2026-01-31T14:00 (UTC)."
        )
    return moment


class RequestFilterForm(forms.Form):
    """The request log's filters, named as in the URL contract (range, since, until,
    tenant, key, model, provider, status, error_type, cached). Every one but the times is
    a choice among what the viewer may see (``choices``: selectors.request_log_choices),
    so a value from another tenant is refused like a made-up one."""

    range = forms.ChoiceField(
        label="Range",
        required=False,
        choices=[(name, label) for name, label in RANGE_LABELS.items() if name != "custom"]
        + [("custom", "Custom…")],
    )
    since = forms.CharField(
        label="Since",
        required=False,
        max_length=40,
        widget=forms.TextInput(attrs={"placeholder": "2026-01-31T14:00"}),
        help_text="ISO date or time, UTC",
    )
    until = forms.CharField(
        label="Until",
        required=False,
        max_length=40,
        widget=forms.TextInput(attrs={"placeholder": "2026-01-31"}),
    )
    tenant = forms.ChoiceField(label="Tenant", required=False)
    key = forms.ChoiceField(label="Key", required=False)
    model = forms.ChoiceField(label="Model or alias", required=False)
    provider = forms.ChoiceField(label="Provider", required=False)
    status = forms.ChoiceField(label="Status", required=False)
    error_type = forms.ChoiceField(label="Error type", required=False)
    cached = forms.ChoiceField(
        label="Cache",
        required=False,
        choices=[("", "Any"), ("1", "Cache hits"), ("0", "Not cached")],
    )

    def __init__(self, *args: Any, tenants: list, choices: dict[str, Any], **kwargs: Any) -> None:
        from tenants_app.models import UsageStatus

        if args and not any(args[0].get(name) for name in ("range", "since", "until")):
            # the default range shows in the picker, not the first choice ("hour")
            data = args[0].copy()
            data["range"] = "day"
            args = (data, *args[1:])
        super().__init__(*args, **kwargs)
        self.tenants_by_slug = {t.slug: t for t in tenants}
        fields = self.fields
        fields["tenant"].choices = [("", "All tenants")] + [(t.slug, t.name) for t in tenants]  # type: ignore[attr-defined]
        fields["key"].choices = [("", "All keys")] + [  # type: ignore[attr-defined]
            (
                str(k.pk),
                f"{k.name} ({k.prefix}…)" + ("" if len(tenants) < 2 else f" · {k.tenant.name}"),
            )
            for k in choices["keys"]
        ]
        fields["model"].choices = [("", "All models")] + [(m, m) for m in choices["models"]]  # type: ignore[attr-defined]
        fields["provider"].choices = [("", "All providers")] + [  # type: ignore[attr-defined]
            (str(p.pk), p.name) for p in choices["providers"]
        ]
        fields["status"].choices = [("", "Any status"), *UsageStatus.choices]  # type: ignore[attr-defined]
        fields["error_type"].choices = [("", "Any error")] + [  # type: ignore[attr-defined]
            (e, e) for e in choices["error_types"]
        ]

    def clean_since(self) -> dt.datetime | None:
        text = self.cleaned_data.get("since") or ""
        return _moment(text, end_of_day=False) if text.strip() else None

    def clean_until(self) -> dt.datetime | None:
        text = self.cleaned_data.get("until") or ""
        return _moment(text, end_of_day=True) if text.strip() else None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        since, until = cleaned.get("since"), cleaned.get("until")
        chosen = cleaned.get("range") or ("custom" if since or until else "day")
        cleaned["range"] = chosen
        if chosen == "custom":
            if since is None and until is None:
                self.add_error("since", "A custom range needs a start, an end or both.")
            elif since and until and until <= since:
                self.add_error("until", "Must be after 'Since'.")
        else:
            # a preset range is counted back from now; since/until only go with "custom"
            cleaned["until"] = None
            cleaned["since"] = timezone.now() - RANGES[chosen]
        return cleaned

    def filters(self) -> dict[str, Any]:
        """The cleaned values as ``selectors.request_log`` keywords."""
        data = self.cleaned_data
        cached = data.get("cached")
        return {
            "since": data.get("since"),
            "until": data.get("until"),
            "key": data.get("key") or None,
            "model": data.get("model") or None,
            "provider_id": int(data["provider"]) if data.get("provider") else None,
            "status": data.get("status") or None,
            "error_type": data.get("error_type") or None,
            "cached": None if not cached else cached == "1",
        }

    def chosen_tenant(self) -> Any:
        return self.tenants_by_slug.get(self.cleaned_data.get("tenant") or "")
