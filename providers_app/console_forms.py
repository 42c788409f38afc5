"""Forms of the console's Providers and Credentials pages.

They parse and check the shape of what was typed; the services decide (and
audit). A service's refusal names a field, and ``add_service_error``
(aipk_site/infra/forms.py) puts it next to that field, so every error shows
inline wherever it was found.

Secrets (API keys, the OAuth client secret) use password inputs that never
render their value back, not even when the form comes back with errors.
"""

from __future__ import annotations

import typing
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from aipk_site.infra.forms import ServiceErrorsMixin
from providers_app.models import KeyStrategy, Provider
from providers_app.services.provider_settings import SETTINGS_MODELS
from providers_app.services.providers import EDITABLE_FIELDS

SETTINGS_PREFIX = "settings_"
# the provider's own columns the form edits directly; ``settings`` is spread over
# one form field per type-specific setting instead
PLAIN_FIELDS = tuple(name for name in EDITABLE_FIELDS if name != "settings")
MAX_GRACE_MINUTES = 7 * 24 * 60


def _write_only() -> forms.PasswordInput:
    return forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"})


def _settings_field(name: str, info: Any) -> forms.Field:
    """A form field for one type-specific setting, from its pydantic declaration."""
    label = name.replace("_", " ").capitalize()
    default = info.default
    annotation = info.annotation
    if typing.get_origin(annotation) is typing.Literal:
        choices = [(value, value) for value in typing.get_args(annotation)]
        return forms.ChoiceField(label=label, choices=choices, initial=default, required=False)
    if annotation is int:
        return forms.IntegerField(label=label, initial=default, required=False)
    # strings and URLs: the settings validator checks them and names the field
    return forms.CharField(label=label, initial=default, required=False)


class ProviderForm(ServiceErrorsMixin, forms.Form):
    """A provider's configuration: the model's fields plus its type's ``settings``.

    On create, ``name`` is asked for; the type comes from the URL (its settings
    fields depend on it). On edit, name and type are fixed (the services do not
    change them). The OAuth client secret is write-only: left blank on edit, the
    stored one is kept."""

    name = forms.SlugField(
        max_length=64,
        help_text="Models are addressed as <name>/<model id>. Letters, digits, - and _.",
    )
    base_url = forms.URLField(
        assume_scheme="https",
        required=False,
        max_length=200,
        label="Base URL",
        help_text="Empty: the provider's public endpoint.",
    )
    default_model = forms.CharField(required=False, max_length=200)
    timeout_seconds = forms.FloatField(
        required=False, min_value=0.1, max_value=3600, label="Timeout (seconds)"
    )
    enabled = forms.BooleanField(required=False, initial=True)
    key_strategy = forms.ChoiceField(choices=KeyStrategy.choices, initial=KeyStrategy.HEALTH_AWARE)
    oauth_client_id = forms.CharField(required=False, max_length=255, label="OAuth client id")
    oauth_client_secret = forms.CharField(
        required=False, label="OAuth client secret", widget=_write_only()
    )
    clear_oauth_client_secret = forms.BooleanField(
        required=False, label="Remove the stored OAuth client secret"
    )
    oauth_authorize_url = forms.URLField(
        assume_scheme="https", required=False, max_length=200, label="OAuth authorize URL"
    )
    oauth_token_url = forms.URLField(
        assume_scheme="https", required=False, max_length=200, label="OAuth token URL"
    )
    oauth_device_url = forms.URLField(
        assume_scheme="https",
        required=False,
        max_length=200,
        label="OAuth device authorization URL",
    )
    oauth_scopes = forms.CharField(required=False, max_length=500, label="OAuth scopes")

    def __init__(self, *args: Any, provider_type: str, instance: Provider | None = None, **kw):
        self.provider_type = provider_type
        self.instance = instance
        if instance is not None and "initial" not in kw:
            kw["initial"] = self._initial_from(instance)
        super().__init__(*args, **kw)
        if instance is not None:
            del self.fields["name"]
            if instance.oauth_client_secret:
                self.fields[
                    "oauth_client_secret"
                ].help_text = "A secret is stored. Leave blank to keep it."
            else:
                del self.fields["clear_oauth_client_secret"]
        else:
            del self.fields["clear_oauth_client_secret"]
        model = SETTINGS_MODELS[provider_type]
        for name, info in model.model_fields.items():
            field = _settings_field(name, info)
            if instance is not None and name in (instance.settings or {}):
                self.initial[SETTINGS_PREFIX + name] = instance.settings[name]
            self.fields[SETTINGS_PREFIX + name] = field

    @staticmethod
    def _initial_from(provider: Provider) -> dict[str, Any]:
        return {name: getattr(provider, name) for name in PLAIN_FIELDS}

    def settings_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name.startswith(SETTINGS_PREFIX)]

    def field_for(self, param: str) -> str | None:
        if SETTINGS_PREFIX + param in self.fields:
            return SETTINGS_PREFIX + param
        if param == "type":
            return None
        return super().field_for(param)

    def service_fields(self) -> dict[str, Any]:
        """What to hand to provider_create / provider_update (on edit: only what changed)."""
        data = self.cleaned_data
        fields: dict[str, Any] = {name: data[name] for name in PLAIN_FIELDS}
        fields["settings"] = {
            name[len(SETTINGS_PREFIX) :]: value
            for name, value in data.items()
            if name.startswith(SETTINGS_PREFIX) and value not in (None, "")
        }
        if data.get("oauth_client_secret"):
            fields["oauth_client_secret"] = data["oauth_client_secret"]
        elif data.get("clear_oauth_client_secret"):
            fields["oauth_client_secret"] = ""
        if self.instance is None:
            return fields
        return {
            name: value
            for name, value in fields.items()
            if name == "oauth_client_secret" or getattr(self.instance, name) != value
        }


def validation_errors(exc: ValidationError) -> dict[str, Any]:
    """A model ValidationError as {field: [messages]} (``__all__`` for the rest)."""
    return exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}


class ApiKeyAddForm(ServiceErrorsMixin, forms.Form):
    provider = forms.ModelChoiceField(queryset=Provider.objects.order_by("name"))
    label = forms.CharField(max_length=100, help_text="Shown in the console and the audit log.")
    secret = forms.CharField(
        label="Secret",
        widget=_write_only(),
        strip=True,
        help_text="Stored encrypted; only its last 4 characters are ever shown again.",
    )


class ApiKeyRotateForm(ServiceErrorsMixin, forms.Form):
    new_secret = forms.CharField(
        label="New secret",
        widget=_write_only(),
        strip=True,
        help_text="Tested live with the provider before anything changes.",
    )
    label = forms.CharField(
        max_length=100, required=False, help_text="Empty: the old label + “(rotated)”."
    )
    grace_minutes = forms.IntegerField(
        min_value=0,
        max_value=MAX_GRACE_MINUTES,
        initial=60,
        label="Grace period (minutes)",
        help_text="The old key keeps serving this long, then it is retired.",
    )

    param_fields = {"grace_seconds": "grace_minutes", "secret": "new_secret"}


class ApiKeyStateForm(forms.Form):
    """Disable (state ``invalid``) or re-enable (``active``) a key by hand."""

    state = forms.ChoiceField(choices=[("active", "active"), ("disabled", "disabled")])
