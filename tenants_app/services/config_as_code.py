"""Configuration as code: ``manage.py aipk_config export`` / ``apply FILE`` (docs/CONFIG.md).

One YAML document, one top-level key per registered section
(aipk_site/infra/config_sections.py): ``providers`` (providers_app), then ``tenants``
(with their virtual keys), ``routes`` and ``prices`` (this module). Apply reads the
file, checks its shape (JSON Schema) and its references (an unknown provider, a
duplicate name, a missing secret), plans the changes against the database, prints
them and, unless it is a dry run, makes them in one transaction through the same
services the API uses (audit, change events). Any error refuses the whole file:
nothing is written.

Decisions (docs/CONFIG.md says why): entries are matched by name (tenant slug, key
name within its tenant, route alias within its scope, price by provider or type and
model); absent entries are reported and only removed with ``--prune`` (virtual keys
revoked, routes and manual prices deleted); tenants and providers are never deleted.
A virtual key in the file that does not exist is created and its secret printed once
(to stderr) after the commit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from jsonschema import Draft202012Validator

from aipk_site.infra.config_sections import (
    SECRET_FIELDS,
    Change,
    PlanContext,
    register_section,
    registered_sections,
)
from aipk_site.infra.errors import AipkError
from providers_app.models import Provider, ProviderType
from tenants_app.models import ModelRoute, Pricing, RouteStrategy, Tenant, UnsupportedParams
from tenants_app.models import VirtualKey as VirtualKeyRow
from tenants_app.services.keys import virtual_key_create, virtual_key_revoke, virtual_key_update
from tenants_app.services.pricing import SOURCE_MANUAL, pricing_delete, pricing_set
from tenants_app.services.routes import route_create, route_delete, route_update
from tenants_app.services.tenants import tenant_create, tenant_update

VERSION = 1
HEADER = "# aipk configuration (manage.py aipk_config export); docs/CONFIG.md\n"

_MONEY = {"type": ["string", "number", "null"], "pattern": r"^[0-9]+(\.[0-9]+)?$", "minimum": 0}
_PRICE = {"type": ["string", "number"], "pattern": r"^[0-9]+(\.[0-9]+)?$", "minimum": 0}
_POSITIVE = {"type": ["integer", "null"], "minimum": 1}

TENANT_DEFAULTS: dict[str, Any] = {
    "active": True,
    "monthly_budget_usd": None,
    "default_rpm": None,
    "default_tpm": None,
    "pii_redaction": False,
    "allowed_providers": [],
}
KEY_DEFAULTS: dict[str, Any] = {
    "allowed_models": [],
    "rpm": None,
    "tpm": None,
    "max_concurrent_streams": None,
    "monthly_budget_usd": None,
    "cache_enabled": False,
    "cache_ttl_seconds": 300,
    "unsupported_params": UnsupportedParams.REFUSE.value,
    "expires_at": None,
}

TENANTS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["slug", "name"],
        "additionalProperties": False,
        "properties": {
            "slug": {"type": "string", "pattern": "^[-a-z0-9_]+$", "maxLength": 50},
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "active": {"type": "boolean"},
            "monthly_budget_usd": _MONEY,
            "default_rpm": _POSITIVE,
            "default_tpm": _POSITIVE,
            "pii_redaction": {"type": "boolean"},
            "allowed_providers": {"type": "array", "items": {"type": "string"}},
            "keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 100},
                        "allowed_models": {"type": "array", "items": {"type": "string"}},
                        "rpm": _POSITIVE,
                        "tpm": _POSITIVE,
                        "max_concurrent_streams": _POSITIVE,
                        "monthly_budget_usd": _MONEY,
                        "cache_enabled": {"type": "boolean"},
                        "cache_ttl_seconds": {"type": "integer", "minimum": 1},
                        "unsupported_params": {"enum": list(UnsupportedParams.values)},
                        "expires_at": {"type": ["string", "null"]},
                    },
                },
            },
        },
    },
}

ROUTES_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["alias", "candidates"],
        "additionalProperties": False,
        "properties": {
            "alias": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[^/]+$"},
            "tenant": {"type": ["string", "null"]},
            "strategy": {"enum": list(RouteStrategy.values)},
            "candidates": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["provider", "model"],
                    "additionalProperties": False,
                    "properties": {
                        "provider": {"type": "string"},
                        "model": {"type": "string", "minLength": 1, "maxLength": 200},
                    },
                },
            },
        },
    },
}

PRICES_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["model", "input_per_million", "output_per_million"],
        "additionalProperties": False,
        # a price is for one provider account or for every provider of a type
        "oneOf": [{"required": ["provider"]}, {"required": ["provider_type"]}],
        "properties": {
            "provider": {"type": "string"},
            "provider_type": {"enum": list(ProviderType.values)},
            "model": {"type": "string", "minLength": 1, "maxLength": 200},
            "input_per_million": _PRICE,
            "output_per_million": _PRICE,
            "cached_input_per_million": {**_PRICE, "type": ["string", "number", "null"]},
            "cache_write_per_million": {**_PRICE, "type": ["string", "number", "null"]},
        },
    },
}


def _money(value: Any, places: str) -> Decimal | None:
    if value is None:
        return None
    return Decimal(str(value)).quantize(Decimal(places))


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Decimal | dt.datetime):
        return str(value)
    return repr(value)


def _diff(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    return {field: value for field, value in wanted.items() if current.get(field) != value}


def _update_changes(what: str, current: dict[str, Any], updates: dict[str, Any], path: str):
    return [
        Change("~", f"update {what} {name}: {_shown(current.get(name))} -> {_shown(value)}", path)
        for name, value in updates.items()
    ]


def _known(context: PlanContext, section: str, key: str, rows: Any) -> set[str]:
    """Names that will exist after apply: those in the file and those stored (tenants and
    providers are never deleted)."""
    return context.names_in(section, key) | set(rows)


# ---- the writes, by name: an entry's provider or tenant may be created earlier in the
# same apply, so it is looked up when the change runs, not when it is planned


def _tenant_update(slug: str, updates: dict[str, Any]) -> None:
    tenant_update(tenant=Tenant.objects.get(slug=slug), actor=None, **updates)


def _route_create(
    scope: str | None, alias: str, candidates: list[dict[str, str]], strategy: str
) -> None:
    tenant = Tenant.objects.get(slug=scope) if scope else None
    route_create(tenant=tenant, alias=alias, candidates=candidates, strategy=strategy, actor=None)


def _price_set(identity: tuple[str, str, str], provider_type: str, rates: dict[str, Any]) -> None:
    kind, owner, model = identity
    provider = Provider.objects.get(name=owner) if kind == "provider" else None
    pricing_set(provider_type=provider_type, provider=provider, model=model, actor=None, **rates)


# ---- tenants and their virtual keys ----------------------------------------------


def _tenant_row(tenant: Tenant) -> dict[str, Any]:
    return {
        "name": tenant.name,
        "active": tenant.active,
        "monthly_budget_usd": tenant.monthly_budget_usd,
        "default_rpm": tenant.default_rpm,
        "default_tpm": tenant.default_tpm,
        "pii_redaction": tenant.pii_redaction,
        "allowed_providers": sorted(p.name for p in tenant.allowed_providers.all()),
    }


def _key_row(key: VirtualKeyRow) -> dict[str, Any]:
    return {field: getattr(key, field) for field in KEY_DEFAULTS}


def _exported(row: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The row without its defaults, decimals and times as text (YAML has no decimal)."""
    out = {}
    for name, value in row.items():
        if name in defaults and value == defaults[name]:
            continue
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, dt.datetime):
            value = value.isoformat()
        out[name] = value
    return out


def _live_keys(tenant: Tenant) -> tuple[dict[str, VirtualKeyRow], list[VirtualKeyRow]]:
    """The tenant's unrevoked keys by name, and those whose name an older key already has:
    names are how a file identifies keys, so only the oldest of a name is managed."""
    by_name: dict[str, VirtualKeyRow] = {}
    namesakes = []
    for key in tenant.virtual_keys.filter(revoked_at__isnull=True).order_by("id"):
        if key.name in by_name:
            namesakes.append(key)
        else:
            by_name[key.name] = key
    return by_name, namesakes


class TenantsSection:
    key = "tenants"
    order = 20
    schema = TENANTS_SCHEMA

    def export(self) -> list[dict[str, Any]]:
        tenants = []
        for tenant in Tenant.objects.prefetch_related("allowed_providers").order_by("slug"):
            entry = {"slug": tenant.slug, **_exported(_tenant_row(tenant), TENANT_DEFAULTS)}
            keys = [
                {"name": key.name, **_exported(_key_row(key), KEY_DEFAULTS)}
                for key in sorted(_live_keys(tenant)[0].values(), key=lambda k: k.name)
            ]
            if keys:
                entry["keys"] = keys
            tenants.append(entry)
        return tenants

    def plan(self, value: Any, context: PlanContext) -> list[Change]:
        if value is None:
            return []
        existing = {t.slug: t for t in Tenant.objects.prefetch_related("allowed_providers")}
        providers = _known(
            context, "providers", "name", Provider.objects.values_list("name", flat=True)
        )
        changes: list[Change] = []
        seen: set[str] = set()
        for n, entry in enumerate(value):
            path = f"tenants[{n}]"
            slug = entry["slug"]
            if slug in seen:
                context.error(f"{path}.slug", f"duplicate tenant {slug!r}")
                continue
            seen.add(slug)
            for m, name in enumerate(entry.get("allowed_providers") or []):
                if name not in providers:
                    context.error(f"{path}.allowed_providers[{m}]", f'unknown provider "{name}"')
            wanted = {
                "name": entry["name"].strip(),
                **{f: entry.get(f, default) for f, default in TENANT_DEFAULTS.items()},
            }
            wanted["monthly_budget_usd"] = _money(wanted["monthly_budget_usd"], "0.0001")
            wanted["allowed_providers"] = sorted(set(wanted["allowed_providers"]))
            tenant = existing.get(slug)
            if tenant is None:
                fields = dict(wanted)
                changes.append(
                    Change(
                        "+",
                        f"create tenant {slug}",
                        path,
                        partial(tenant_create, slug=slug, actor=None, **fields),
                    )
                )
            else:
                current = _tenant_row(tenant)
                updates = _diff(current, wanted)
                lines = _update_changes(f"tenant {slug}", current, updates, path)
                if lines:
                    lines[-1].action = partial(_tenant_update, slug, updates)
                changes += lines
            changes += self._plan_keys(entry, tenant, path, context)
        for slug in sorted(set(existing) - seen):
            changes.append(
                Change(" ", f"tenant {slug} is absent from the file: kept (never deleted)")
            )
        return changes

    def _plan_keys(
        self, entry: dict[str, Any], tenant: Tenant | None, path: str, context: PlanContext
    ) -> list[Change]:
        slug = entry["slug"]
        current, namesakes = _live_keys(tenant) if tenant is not None else ({}, [])
        changes: list[Change] = [
            Change(
                " ",
                f"virtual key {slug}/{key.name} ({key.prefix}…) shares its name with an older "
                "key: not managed by the file (rename it to manage it)",
            )
            for key in namesakes
        ]
        seen: set[str] = set()
        for n, item in enumerate(entry.get("keys") or []):
            key_path = f"{path}.keys[{n}]"
            name = item["name"].strip()
            if name in seen:
                context.error(f"{key_path}.name", f"duplicate key {name!r} in tenant {slug}")
                continue
            seen.add(name)
            wanted = {f: item.get(f, default) for f, default in KEY_DEFAULTS.items()}
            wanted["monthly_budget_usd"] = _money(wanted["monthly_budget_usd"], "0.0001")
            wanted["allowed_models"] = list(
                dict.fromkeys(m.strip() for m in wanted["allowed_models"])
            )
            if wanted["expires_at"] is not None:
                expires_at = parse_datetime(wanted["expires_at"])
                if expires_at is None or expires_at.tzinfo is None:
                    context.error(
                        f"{key_path}.expires_at", "must be an ISO 8601 time with a UTC offset"
                    )
                    continue
                wanted["expires_at"] = expires_at
            key = current.get(name)
            if key is None and wanted["expires_at"] and wanted["expires_at"] <= timezone.now():
                # an export keeps expired keys; a new one could never be used
                changes.append(
                    Change(
                        "!",
                        f"virtual key {slug}/{name} expired at {wanted['expires_at']}: not created",
                        key_path,
                    )
                )
                continue
            if key is None:
                changes.append(
                    Change(
                        "+",
                        f"create virtual key {slug}/{name} (its secret is printed once)",
                        key_path,
                        self._creator(slug, name, wanted, context),
                    )
                )
                continue
            row = _key_row(key)
            updates = _diff(row, wanted)
            lines = _update_changes(f"virtual key {slug}/{name}", row, updates, key_path)
            if lines:
                lines[-1].action = partial(virtual_key_update, key=key, actor=None, **updates)
            changes += lines
        for name in sorted(set(current) - seen):
            key = current[name]
            if context.prune:
                changes.append(
                    Change(
                        "-",
                        f"delete virtual key {slug}/{name} (revoked)",
                        path,
                        partial(virtual_key_revoke, key=key, actor=None),
                    )
                )
            else:
                changes.append(
                    Change(
                        " ", f"virtual key {slug}/{name} is absent from the file: kept (--prune)"
                    )
                )
        return changes

    @staticmethod
    def _creator(slug: str, name: str, fields: dict[str, Any], context: PlanContext):
        def create() -> None:
            _, secret = virtual_key_create(
                tenant=Tenant.objects.get(slug=slug), name=name, actor=None, **fields
            )
            context.notices.append(f"new virtual key {slug}/{name}: {secret}")

        return create


# ---- routes -----------------------------------------------------------------------


def _route_entry(route: ModelRoute) -> dict[str, Any]:
    entry: dict[str, Any] = {"alias": route.alias}
    if route.tenant_id is not None:
        entry["tenant"] = route.tenant.slug
    if route.strategy != RouteStrategy.FAILOVER:
        entry["strategy"] = route.strategy
    entry["candidates"] = [
        {"provider": c["provider"], "model": c["model"]} for c in route.candidates
    ]
    return entry


class RoutesSection:
    key = "routes"
    order = 30
    schema = ROUTES_SCHEMA

    def export(self) -> list[dict[str, Any]]:
        routes = ModelRoute.objects.select_related("tenant")
        return [
            _route_entry(route)
            for route in sorted(
                routes, key=lambda r: (r.tenant is not None, r.tenant and r.tenant.slug, r.alias)
            )
        ]

    def plan(self, value: Any, context: PlanContext) -> list[Change]:
        if value is None:
            return []
        existing = {
            (route.tenant.slug if route.tenant else None, route.alias): route
            for route in ModelRoute.objects.select_related("tenant")
        }
        providers = _known(
            context, "providers", "name", Provider.objects.values_list("name", flat=True)
        )
        tenants = _known(context, "tenants", "slug", Tenant.objects.values_list("slug", flat=True))
        changes: list[Change] = []
        seen: set[tuple[str | None, str]] = set()
        for n, entry in enumerate(value):
            path = f"routes[{n}]"
            scope, alias = entry.get("tenant"), entry["alias"].strip()
            where = f"route {alias}" + (f" (tenant {scope})" if scope else "")
            if (scope, alias) in seen:
                context.error(f"{path}.alias", f"duplicate {where}")
                continue
            seen.add((scope, alias))
            if scope is not None and scope not in tenants:
                context.error(f"{path}.tenant", f'unknown tenant "{scope}"')
            for m, candidate in enumerate(entry["candidates"]):
                if candidate["provider"] not in providers:
                    context.error(
                        f"{path}.candidates[{m}].provider",
                        f'unknown provider "{candidate["provider"]}"',
                    )
            candidates = [
                {"provider": c["provider"], "model": c["model"].strip()}
                for c in entry["candidates"]
            ]
            strategy = entry.get("strategy", RouteStrategy.FAILOVER.value)
            route = existing.get((scope, alias))
            if route is None:
                changes.append(
                    Change(
                        "+",
                        f"create {where}",
                        path,
                        partial(_route_create, scope, alias, candidates, strategy),
                    )
                )
                continue
            current = {"strategy": route.strategy, "candidates": route.candidates}
            updates = _diff(current, {"strategy": strategy, "candidates": candidates})
            lines = _update_changes(where, current, updates, path)
            if lines:
                lines[-1].action = partial(route_update, route=route, actor=None, **updates)
            changes += lines
        for scope, alias in sorted(set(existing) - seen, key=lambda k: (k[0] or "", k[1])):
            where = f"route {alias}" + (f" (tenant {scope})" if scope else "")
            route = existing[(scope, alias)]
            if context.prune:
                changes.append(
                    Change(
                        "-",
                        f"delete {where}",
                        where,
                        partial(route_delete, route=route, actor=None),
                    )
                )
            else:
                changes.append(Change(" ", f"{where} is absent from the file: kept (--prune)"))
        return changes


# ---- prices -----------------------------------------------------------------------

_RATES = (
    "input_per_million",
    "output_per_million",
    "cached_input_per_million",
    "cache_write_per_million",
)


class PricesSection:
    """Manual prices only: the bundled table is ``manage.py load_pricing``'s."""

    key = "prices"
    order = 40
    schema = PRICES_SCHEMA

    @staticmethod
    def _identity(price: Pricing) -> tuple[str, str, str]:
        if price.provider_id is not None:
            return ("provider", price.provider.name, price.model)
        return ("provider_type", price.provider_type, price.model)

    def export(self) -> list[dict[str, Any]]:
        rows = Pricing.objects.filter(source=SOURCE_MANUAL).select_related("provider")
        entries = []
        for price in sorted(rows, key=self._identity):
            kind, owner, model = self._identity(price)
            entry: dict[str, Any] = {kind: owner, "model": model}
            for rate in _RATES:
                amount = getattr(price, rate)
                if amount is not None:
                    entry[rate] = str(amount)
            entries.append(entry)
        return entries

    def plan(self, value: Any, context: PlanContext) -> list[Change]:
        if value is None:
            return []
        rows = Pricing.objects.select_related("provider")
        existing = {self._identity(price): price for price in rows}
        provider_types = dict(Provider.objects.values_list("name", "type"))
        for entry in context.document.get("providers") or []:
            provider_types[entry["name"]] = entry["type"]
        changes: list[Change] = []
        seen: set[tuple[str, str, str]] = set()
        for n, entry in enumerate(value):
            path = f"prices[{n}]"
            model = entry["model"].strip()
            if "provider" in entry:
                identity = ("provider", entry["provider"], model)
                provider_type = provider_types.get(entry["provider"])
                if provider_type is None:
                    context.error(f"{path}.provider", f'unknown provider "{entry["provider"]}"')
                    continue
            else:
                identity = ("provider_type", entry["provider_type"], model)
                provider_type = entry["provider_type"]
            where = f"price {identity[1]}/{model}"
            if identity in seen:
                context.error(f"{path}.model", f"duplicate {where}")
                continue
            seen.add(identity)
            try:
                wanted = {rate: _money(entry.get(rate), "0.000001") for rate in _RATES}
            except InvalidOperation:
                context.error(path, "rates must be numbers")
                continue
            price = existing.get(identity)
            if price is not None and price.source == SOURCE_MANUAL:
                current = {rate: getattr(price, rate) for rate in _RATES}
                updates = _diff(current, wanted)
                changes_here = _update_changes(where, current, updates, path)
            else:
                # a new price, or one replacing the bundled table's figure for it
                changes_here = [Change("+", f"create {where}", path)]
            if changes_here:
                changes_here[-1].action = partial(_price_set, identity, provider_type, wanted)
            changes += changes_here
        for identity in sorted(set(existing) - seen):
            price = existing[identity]
            if price.source != SOURCE_MANUAL:
                continue
            where = f"price {identity[1]}/{identity[2]}"
            if context.prune:
                changes.append(
                    Change(
                        "-",
                        f"delete {where}",
                        where,
                        partial(pricing_delete, pricing=price, actor=None),
                    )
                )
            else:
                changes.append(Change(" ", f"{where} is absent from the file: kept (--prune)"))
        return changes


register_section(TenantsSection())
register_section(RoutesSection())
register_section(PricesSection())
# EXTENSION POINT: another feature's settings (alert settings, for one) become a section
# of the same file by registering a ConfigSection of their own (order after 40) from
# their app's ready(); export and apply below need no change. docs/CONFIG.md "Adding a
# section"; tests/tenants/test_config_as_code.py registers one for the test.


# ---- export and apply -------------------------------------------------------------


class ConfigRefused(Exception):
    """The file was refused; ``errors`` are ``path: message`` lines. Nothing was written."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} error(s) in the configuration; nothing was changed")


@dataclass
class ApplyResult:
    lines: list[str]
    # what apply changed (or, in a dry run, would change)
    changes: int
    # lines for stderr only: a new virtual key's secret, shown this once
    notices: list[str] = field(default_factory=list)


def config_document() -> dict[str, Any]:
    document: dict[str, Any] = {"version": VERSION}
    for section in registered_sections():
        document[section.key] = section.export()
    return document


def config_export() -> str:
    """The configuration as YAML: the same database always gives the same text."""
    return HEADER + yaml.safe_dump(
        config_document(), sort_keys=False, allow_unicode=True, default_flow_style=False
    )


def _schema() -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "version": {"const": VERSION},
            **{section.key: section.schema for section in registered_sections()},
        },
    }


def _path(parts: Any) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(document)"


def _schema_errors(document: dict[str, Any]) -> list[str]:
    errors = []
    validator = Draft202012Validator(_schema())
    for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.path))):
        path = _path(error.absolute_path)
        if SECRET_FIELDS & {str(part) for part in error.absolute_path}:
            # jsonschema's message quotes the value, and this value may be a secret
            errors.append(f"{path}: must be {{env: NAME}} or {{file: PATH}}, never the secret")
        elif error.validator == "oneOf" and path.startswith("prices["):
            errors.append(f"{path}: give exactly one of provider or provider_type")
        else:
            errors.append(f"{path}: {error.message}")
    return errors


def _plain(value: Any) -> Any:
    """YAML reads an unquoted 2027-01-01T00:00:00Z as a datetime; the schema speaks JSON."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _parse(text: str) -> dict[str, Any]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(document)"
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigRefused([f"{where}: {problem}"]) from None
    if not isinstance(document, dict):
        raise ConfigRefused(["(document): must be a mapping of sections"])
    return _plain(document)


def _refusal_message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{name}: {', '.join(messages)}" for name, messages in exc.message_dict.items()
        )
    return str(exc)


def config_apply(*, text: str, dry_run: bool = False, prune: bool = False) -> ApplyResult:
    """Make the database match ``text``. Raises ConfigRefused (nothing written) when the
    file is invalid or a service refuses one of its changes."""
    document = _parse(text)
    errors = _schema_errors(document)
    if errors:
        raise ConfigRefused(errors)
    context = PlanContext(document=document, prune=prune)
    plan: list[Change] = []
    for section in registered_sections():
        plan += section.plan(document.get(section.key), context)
    if context.errors:
        raise ConfigRefused(context.errors)
    lines = [change.line for change in plan]
    changes = sum(1 for change in plan if change.sign in "+~-")
    if not changes:
        lines.append("no changes")
    if dry_run or not changes:
        return ApplyResult(lines=lines, changes=changes)
    try:
        with transaction.atomic():
            for change in plan:
                if change.action is not None:
                    try:
                        change.action()
                    except (AipkError, ValidationError) as exc:
                        raise ConfigRefused([f"{change.path}: {_refusal_message(exc)}"]) from None
    except ConfigRefused:
        context.notices.clear()  # the keys were rolled back with everything else
        raise
    return ApplyResult(lines=lines, changes=changes, notices=context.notices)
