"""Model routes: an alias clients call → ordered (provider, model) candidates.

A tenant's route shadows a global one (tenant None) of the same alias. The
request path keeps routes in a per-process cache, dropped here after each
change (and again on commit, in case a read re-filled it from the old rows)."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from aipk_site.infra.audit import audit_record
from aipk_site.infra.errors import InvalidRequest
from providers_app.models import Provider
from tenants_app.models import ModelRoute, RouteStrategy, Tenant
from tenants_app.signals import announce, routes_changed


def _clear_now_and_on_commit() -> None:
    announce(routes_changed)


def _clean_alias(alias: Any) -> str:
    alias = alias.strip() if isinstance(alias, str) else ""
    if not alias or len(alias) > 100:
        raise InvalidRequest("alias must be 1 to 100 characters", param="alias")
    if "/" in alias:
        # "<provider>/<model>" is how clients name a model directly
        raise InvalidRequest("alias must not contain '/'", param="alias")
    return alias


def _clean_strategy(strategy: Any) -> str:
    if strategy not in RouteStrategy.values:
        raise InvalidRequest(
            f"strategy must be one of {', '.join(RouteStrategy.values)}", param="strategy"
        )
    return str(strategy)


def _clean_candidates(candidates: Any, tenant: Tenant | None) -> list[dict[str, str]]:
    if not isinstance(candidates, list) or not candidates:
        raise InvalidRequest("candidates must be a non-empty list", param="candidates")
    cleaned = []
    for n, candidate in enumerate(candidates):
        where = f"candidates.{n}"
        if not isinstance(candidate, dict) or set(candidate) != {"provider", "model"}:
            raise InvalidRequest(
                f"{where} must be an object with 'provider' and 'model'", param=where
            )
        provider, model = candidate["provider"], candidate["model"]
        if not isinstance(model, str) or not model.strip() or len(model) > 200:
            raise InvalidRequest(f"{where}.model must be 1 to 200 characters", param=where)
        if not isinstance(provider, str):
            raise InvalidRequest(f"{where}.provider must be a provider name", param=where)
        cleaned.append({"provider": provider, "model": model.strip()})
    names = {c["provider"] for c in cleaned}
    known = set(Provider.objects.filter(name__in=names).values_list("name", flat=True))
    allowed = (
        set(tenant.allowed_providers.values_list("name", flat=True))
        if tenant is not None
        else set()
    )
    for n, candidate in enumerate(cleaned):
        if candidate["provider"] not in known:
            raise InvalidRequest(
                f"candidates.{n}.provider: unknown provider {candidate['provider']!r}",
                param=f"candidates.{n}.provider",
            )
        if allowed and candidate["provider"] not in allowed:
            raise InvalidRequest(
                f"candidates.{n}.provider: {candidate['provider']!r} is not allowed "
                "for this tenant",
                param=f"candidates.{n}.provider",
            )
    return cleaned


def _audit(action: str, route: ModelRoute, actor: Any, ip_address: str | None, changes: dict):
    audit_record(
        action=action,
        obj=route,
        actor=actor,
        tenant=route.tenant,
        ip_address=ip_address,
        changes={"alias": route.alias, "scope": route.tenant.slug if route.tenant else "global"}
        | changes,
    )


@transaction.atomic
def route_create(
    *,
    tenant: Tenant | None,
    alias: str,
    candidates: list[dict[str, str]],
    strategy: str = RouteStrategy.FAILOVER,
    actor: Any,
    ip_address: str | None = None,
) -> ModelRoute:
    """A route for ``tenant``, or a global one when ``tenant`` is None."""
    alias = _clean_alias(alias)
    strategy = _clean_strategy(strategy)
    cleaned = _clean_candidates(candidates, tenant)
    taken = InvalidRequest(f"a route with alias {alias!r} already exists", param="alias")
    if ModelRoute.objects.filter(tenant=tenant, alias=alias).exists():
        raise taken
    try:
        with transaction.atomic():
            route = ModelRoute.objects.create(
                tenant=tenant, alias=alias, strategy=strategy, candidates=cleaned
            )
    except IntegrityError:
        raise taken from None
    _audit("route.create", route, actor, ip_address, {"strategy": strategy, "candidates": cleaned})
    _clear_now_and_on_commit()
    return route


@transaction.atomic
def route_update(
    *,
    route: ModelRoute,
    strategy: str | None = None,
    candidates: list[dict[str, str]] | None = None,
    actor: Any,
    ip_address: str | None = None,
) -> ModelRoute:
    changes: dict[str, Any] = {}
    if strategy is not None:
        strategy = _clean_strategy(strategy)
        if strategy != route.strategy:
            changes["strategy"] = {"from": route.strategy, "to": strategy}
            route.strategy = strategy
    if candidates is not None:
        cleaned = _clean_candidates(candidates, route.tenant)
        if cleaned != route.candidates:
            changes["candidates"] = {"from": route.candidates, "to": cleaned}
            route.candidates = cleaned
    if changes:
        route.save(update_fields=["strategy", "candidates", "updated_at"])
        _audit("route.update", route, actor, ip_address, changes)
        _clear_now_and_on_commit()
    return route


@transaction.atomic
def route_delete(*, route: ModelRoute, actor: Any, ip_address: str | None = None) -> None:
    _audit(
        "route.delete",
        route,
        actor,
        ip_address,
        {"strategy": route.strategy, "candidates": route.candidates},
    )
    route.delete()
    _clear_now_and_on_commit()
