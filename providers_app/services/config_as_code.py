"""The ``providers`` section of configuration as code (docs/CONFIG.md).

A provider is matched by name; its API keys (shared ones, not tenant-scoped) by label
within it. Secrets are written as references (``{env: AIPK_PROVIDER_<NAME>_KEY_<LABEL>}``)
and read from the environment or a file at apply time; an unchanged secret (compared
with the decrypted stored one, in constant time) is not saved again. OAuth accounts
are listed for the record only: they come from a sign-in flow, so apply reports a
missing one and never creates, changes or deletes one. Providers are never deleted
(their usage history points at them); ``--prune`` retires API keys absent from the file.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from aipk_site.infra.config_sections import (
    SECRET_REFERENCE_SCHEMA,
    Change,
    PlanContext,
    env_name,
    register_section,
    resolve_secret,
    secret_matches,
)
from providers_app.kit.providers import PROFILES
from providers_app.models import ApiKey, KeyStrategy, OAuthCredential, Provider
from providers_app.services.credentials import (
    api_key_add,
    api_key_replace_secret,
    api_key_set_state,
)
from providers_app.services.provider_settings import (
    ProviderSettingsError,
    validate_provider_settings,
)
from providers_app.services.providers import provider_create, provider_update

# field -> the value an absent field means (what a new provider gets)
PROVIDER_DEFAULTS: dict[str, Any] = {
    "base_url": "",
    "default_model": "",
    "settings": {},
    "timeout_seconds": None,
    "enabled": True,
    "key_strategy": KeyStrategy.HEALTH_AWARE.value,
    "oauth_client_id": "",
    "oauth_authorize_url": "",
    "oauth_token_url": "",
    "oauth_device_url": "",
    "oauth_scopes": "",
}

_text = {"type": "string"}

PROVIDERS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["name", "type"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": "^[-a-zA-Z0-9_]+$", "maxLength": 64},
            "type": {"enum": list(PROFILES)},
            "base_url": _text,
            "default_model": _text,
            "settings": {"type": "object"},
            "timeout_seconds": {"type": ["number", "null"], "exclusiveMinimum": 0},
            "enabled": {"type": "boolean"},
            "key_strategy": {"enum": list(KeyStrategy.values)},
            "oauth_client_id": _text,
            "oauth_authorize_url": _text,
            "oauth_token_url": _text,
            "oauth_device_url": _text,
            "oauth_scopes": _text,
            "oauth_client_secret": SECRET_REFERENCE_SCHEMA,
            "api_keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["label", "api_key"],
                    "additionalProperties": False,
                    "properties": {
                        "label": {"type": "string", "minLength": 1, "maxLength": 100},
                        "api_key": SECRET_REFERENCE_SCHEMA,
                        "enabled": {"type": "boolean"},
                    },
                },
            },
            "oauth_accounts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["account_label"],
                    "additionalProperties": False,
                    "properties": {
                        "account_label": {"type": "string", "minLength": 1},
                        "state": {"enum": list(OAuthCredential.State.values)},
                    },
                },
            },
        },
    },
}


def _shown(value: Any) -> str:
    return "null" if value is None else repr(value)


def _sorted(value: Any) -> Any:
    """Settings with their keys in order: PostgreSQL's jsonb keeps its own order, and the
    same configuration should export the same text on any database."""
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    return value


def _serving_keys(provider: Provider) -> tuple[dict[str, ApiKey], list[ApiKey]]:
    """The provider's shared, unretired keys by label, and those whose label an older key
    already has: labels are how a file identifies keys, so only the oldest is managed."""
    by_label: dict[str, ApiKey] = {}
    namesakes = []
    keys = provider.api_keys.filter(tenant__isnull=True).exclude(state=ApiKey.State.RETIRED)
    for key in keys.order_by("created_at", "id"):
        if key.label in by_label:
            namesakes.append(key)
        else:
            by_label[key.label] = key
    return by_label, namesakes


def _unique(name: str, used: set[str]) -> str:
    """Two labels or provider names that spell the same variable ("a b", "a-b") get
    distinct ones: _2, _3, ..."""
    suffix, unique = 2, name
    while unique in used:
        unique, suffix = f"{name}_{suffix}", suffix + 1
    used.add(unique)
    return unique


def _export_provider(provider: Provider, used_names: set[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": provider.name, "type": provider.type}
    for field, default in PROVIDER_DEFAULTS.items():
        value = getattr(provider, field)
        if value != default:
            entry[field] = _sorted(value) if field == "settings" else value
    if provider.oauth_client_secret:
        name = env_name("AIPK_PROVIDER", provider.name, "OAUTH_CLIENT_SECRET")
        entry["oauth_client_secret"] = {"env": _unique(name, used_names)}
    keys = []
    for key in _serving_keys(provider)[0].values():
        name = _unique(env_name("AIPK_PROVIDER", provider.name, "KEY", key.label), used_names)
        item: dict[str, Any] = {"label": key.label, "api_key": {"env": name}}
        if key.state == ApiKey.State.DISABLED:
            item["enabled"] = False
        keys.append(item)
    if keys:
        entry["api_keys"] = keys
    accounts = [
        {"account_label": credential.account_label, "state": credential.state}
        for credential in provider.oauth_credentials.filter(tenant__isnull=True)
    ]
    if accounts:
        entry["oauth_accounts"] = accounts
    return entry


class ProvidersSection:
    key = "providers"
    order = 10
    schema = PROVIDERS_SCHEMA

    def export(self) -> list[dict[str, Any]]:
        used_names: set[str] = set()
        return [
            _export_provider(provider, used_names) for provider in Provider.objects.order_by("name")
        ]

    def plan(self, value: Any, context: PlanContext) -> list[Change]:
        if value is None:
            return []
        existing = {provider.name: provider for provider in Provider.objects.all()}
        changes: list[Change] = []
        seen: set[str] = set()
        for n, entry in enumerate(value):
            path = f"providers[{n}]"
            if entry["name"] in seen:
                context.error(f"{path}.name", f"duplicate provider {entry['name']!r}")
                continue
            seen.add(entry["name"])
            changes += self._plan_provider(entry, existing.get(entry["name"]), path, context)
        for name in sorted(set(existing) - seen):
            changes.append(
                Change(" ", f"provider {name} is absent from the file: kept (never deleted)")
            )
        return changes

    def _plan_provider(
        self, entry: dict[str, Any], provider: Provider | None, path: str, context: PlanContext
    ) -> list[Change]:
        name = entry["name"]
        wanted = {field: entry.get(field, default) for field, default in PROVIDER_DEFAULTS.items()}
        try:
            wanted["settings"] = validate_provider_settings(entry["type"], wanted["settings"])
        except ProviderSettingsError as exc:
            for field, message in exc.errors.items():
                context.error(f"{path}.settings.{field}", message)
            return []
        if wanted["timeout_seconds"] is not None:
            wanted["timeout_seconds"] = float(wanted["timeout_seconds"])
        client_secret = None
        if "oauth_client_secret" in entry:
            client_secret = resolve_secret(
                entry["oauth_client_secret"], f"{path}.oauth_client_secret", context
            )
        changes: list[Change] = []
        if provider is None:
            fields = dict(wanted)
            if client_secret:
                fields["oauth_client_secret"] = client_secret
            changes.append(
                Change(
                    "+",
                    f"create provider {name} ({entry['type']})",
                    path,
                    lambda: provider_create(name=name, type=entry["type"], **fields),
                )
            )
        else:
            if provider.type != entry["type"]:
                context.error(
                    f"{path}.type",
                    f"provider {name!r} is of type {provider.type!r}; a type cannot change",
                )
                return []
            updates = {
                field: value for field, value in wanted.items() if getattr(provider, field) != value
            }
            lines = [
                f"{field}: {_shown(getattr(provider, field))} -> {_shown(value)}"
                for field, value in updates.items()
            ]
            if client_secret is not None and not secret_matches(
                provider.oauth_client_secret, client_secret
            ):
                updates["oauth_client_secret"] = client_secret
                lines.append("oauth_client_secret: (changed)")
            if "oauth_client_secret" not in entry and provider.oauth_client_secret:
                updates["oauth_client_secret"] = ""
                lines.append("oauth_client_secret: (removed)")
            for line in lines:
                changes.append(Change("~", f"update provider {name} {line}", path))
            if updates:
                # one service call carries every field; the diff shows one line per field
                changes[-1].action = lambda: provider_update(
                    provider=Provider.objects.get(name=name), **updates
                )
        changes += self._plan_keys(entry, provider, path, context)
        changes += self._plan_oauth_accounts(entry, provider, path)
        return changes

    def _plan_keys(
        self, entry: dict[str, Any], provider: Provider | None, path: str, context: PlanContext
    ) -> list[Change]:
        name = entry["name"]
        current, namesakes = _serving_keys(provider) if provider is not None else ({}, [])
        changes: list[Change] = [
            Change(
                " ",
                f"api key {name}/{key.label} (…{key.last4}) shares its label with an older "
                "key: not managed by the file (rename it to manage it)",
            )
            for key in namesakes
        ]
        seen: set[str] = set()
        for n, item in enumerate(entry.get("api_keys") or []):
            key_path = f"{path}.api_keys[{n}]"
            label = item["label"].strip()
            if label in seen:
                context.error(f"{key_path}.label", f"duplicate label {label!r} in provider {name}")
                continue
            seen.add(label)
            secret = resolve_secret(item["api_key"], f"{key_path}.api_key", context)
            if secret is None:
                continue
            if len(secret) < 8:
                context.error(f"{key_path}.api_key", "an API key has at least 8 characters")
                continue
            enabled = item.get("enabled", True)
            changes += self._plan_key(name, label, secret, enabled, current.get(label), key_path)
        for label in sorted(set(current) - seen):
            key = current[label]
            if context.prune:
                changes.append(
                    Change(
                        "-",
                        f"delete api key {name}/{label} (retired)",
                        path,
                        partial(
                            api_key_set_state,
                            key=key,
                            state=ApiKey.State.RETIRED,
                            reason="absent from config",
                        ),
                    )
                )
            else:
                changes.append(
                    Change(" ", f"api key {name}/{label} is absent from the file: kept (--prune)")
                )
        return changes

    def _plan_key(
        self,
        provider_name: str,
        label: str,
        secret: str,
        enabled: bool,
        key: ApiKey | None,
        path: str,
    ) -> list[Change]:
        where = f"api key {provider_name}/{label}"
        if key is None:

            def create() -> None:
                created = api_key_add(
                    provider=Provider.objects.get(name=provider_name), label=label, secret=secret
                )
                if not enabled:
                    api_key_set_state(key=created, state=ApiKey.State.DISABLED, reason="config")

            suffix = "" if enabled else " (disabled)"
            return [Change("+", f"create {where}{suffix}", path, create)]
        changes = []
        if not secret_matches(key.secret, secret):
            changes.append(
                Change(
                    "~",
                    f"update {where} secret: (changed)",
                    path,
                    lambda: api_key_replace_secret(key=key, secret=secret),
                )
            )
        is_enabled = key.state != ApiKey.State.DISABLED
        if enabled != is_enabled:
            state = ApiKey.State.ACTIVE if enabled else ApiKey.State.DISABLED
            changes.append(
                Change(
                    "~",
                    f"update {where} enabled: {str(is_enabled).lower()} -> {str(enabled).lower()}",
                    path,
                    lambda: api_key_set_state(
                        key=ApiKey.objects.get(pk=key.pk), state=state, reason="config"
                    ),
                )
            )
        return changes

    def _plan_oauth_accounts(
        self, entry: dict[str, Any], provider: Provider | None, path: str
    ) -> list[Change]:
        connected = (
            set(
                provider.oauth_credentials.filter(tenant__isnull=True)
                .exclude(state=OAuthCredential.State.REVOKED)
                .values_list("account_label", flat=True)
            )
            if provider is not None
            else set()
        )
        return [
            Change(
                "!",
                f"oauth account {entry['name']}/{item['account_label']} is not connected: "
                "connect it in the console (apply cannot create OAuth accounts)",
                f"{path}.oauth_accounts[{n}]",
            )
            for n, item in enumerate(entry.get("oauth_accounts") or [])
            if item["account_label"] not in connected
            and item.get("state") != OAuthCredential.State.REVOKED
        ]


register_section(ProvidersSection())
