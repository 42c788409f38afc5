"""Model routing: aliases and provider/model ids → ordered candidates, per tenant and key."""

from __future__ import annotations

import secrets
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.utils import timezone

from aipk_site.gateway.routing import (
    Candidate,
    Resolution,
    models_for,
    record_latency,
    resolve_model,
    routing_cache_clear,
)
from aipk_site.infra.errors import InvalidRequest, NotFound, PermissionDenied, UpstreamError
from providers_app.models import DiscoveredModel, Provider
from providers_app.services.providers import provider_create
from tenants_app.models import ModelRoute, Pricing, RouteStrategy, Tenant
from tenants_app.services.pricing import pricing_cache_clear

# async tests read through the async ORM's worker thread: rows must be committed
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def fresh_state():
    routing_cache_clear()
    pricing_cache_clear()
    yield
    routing_cache_clear()
    pricing_cache_clear()
    # the async ORM ran in asgiref's worker thread: close its connection there
    await sync_to_async(connections.close_all)()


@pytest.fixture
def cast(transactional_db):
    """Two tenants and four providers; "openrouter" serves ids containing "/"."""

    class Cast:
        acme = Tenant.objects.create(name="Acme", slug="acme")
        globex = Tenant.objects.create(name="Globex", slug="globex")
        openai = provider_create(name="openai", type="openai", default_model="gpt-4o-mini")
        anthropic = provider_create(name="anthropic", type="anthropic")
        gemini = provider_create(name="gemini", type="gemini")
        openrouter = provider_create(name="openrouter", type="openrouter")

    return Cast


def route(tenant: Tenant | None, alias: str, *pairs: tuple[Provider, str], strategy="failover"):
    return ModelRoute.objects.create(
        tenant=tenant,
        alias=alias,
        strategy=strategy,
        candidates=[{"provider": p.name, "model": m} for p, m in pairs],
    )


def unique(prefix: str) -> str:
    # shared-cache keys (latency averages) outlive a test on Redis: never reuse a model id
    return f"{prefix}-{secrets.token_hex(4)}"


async def resolve(
    cast, model, *, tenant=None, allowed_models=(), allowed_provider_ids=None, ordered=True
):
    return await resolve_model(
        tenant_id=(tenant or cast.acme).pk,
        model=model,
        allowed_models=list(allowed_models),
        allowed_provider_ids=allowed_provider_ids,
        ordered=ordered,
    )


def pairs(resolution: Resolution) -> list[tuple[str, str]]:
    return [(c.provider.name, c.model) for c in resolution.candidates]


# --- aliases and tenants -------------------------------------------------------------


async def test_it_resolves_a_global_alias_in_listed_order(cast):
    await sync_to_async(route)(
        None, "smart", (cast.anthropic, "claude-sonnet"), (cast.openai, "gpt-4o")
    )
    resolution = await resolve(cast, "smart")
    assert resolution.alias == "smart"
    assert resolution.strategy == "failover"
    assert pairs(resolution) == [("anthropic", "claude-sonnet"), ("openai", "gpt-4o")]
    assert all(isinstance(c, Candidate) and c.provider.enabled for c in resolution.candidates)


async def test_it_lets_a_tenant_route_shadow_the_global_one(cast):
    await sync_to_async(route)(None, "fast", (cast.openai, "gpt-4o-mini"))
    await sync_to_async(route)(cast.acme, "fast", (cast.gemini, "gemini-2.0-flash"))
    assert pairs(await resolve(cast, "fast")) == [("gemini", "gemini-2.0-flash")]
    # a tenant without its own route still gets the global one
    assert pairs(await resolve(cast, "fast", tenant=cast.globex)) == [("openai", "gpt-4o-mini")]


async def test_it_hides_another_tenants_route(cast):
    await sync_to_async(route)(cast.globex, "globex-secret", (cast.openai, "gpt-4o"))
    with pytest.raises(NotFound) as caught:
        await resolve(cast, "globex-secret")
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    assert "globex-secret" in caught.value.message
    assert pairs(await resolve(cast, "globex-secret", tenant=cast.globex)) == [("openai", "gpt-4o")]


async def test_it_ignores_malformed_route_candidates(cast):
    await ModelRoute.objects.acreate(
        alias="messy",
        candidates=[
            {"provider": "openai"},
            "openai/gpt-4o",
            {"provider": "no-such-provider", "model": "x"},
            {"provider": "openai", "model": "gpt-4o"},
        ],
    )
    assert pairs(await resolve(cast, "messy")) == [("openai", "gpt-4o")]


# --- provider/model ids --------------------------------------------------------------


async def test_it_resolves_provider_model_ids_with_slashes_in_the_model(cast):
    resolution = await resolve(cast, "openrouter/meta-llama/llama-3-8b")
    assert resolution.alias == ""
    assert resolution.strategy == "failover"
    assert pairs(resolution) == [("openrouter", "meta-llama/llama-3-8b")]
    assert resolution.candidates[0].provider.pk == cast.openrouter.pk


async def test_it_prefers_an_alias_that_looks_like_a_provider_id(cast):
    await sync_to_async(route)(None, "openai/gpt-4o", (cast.anthropic, "claude-sonnet"))
    resolution = await resolve(cast, "openai/gpt-4o")
    assert resolution.alias == "openai/gpt-4o"
    assert pairs(resolution) == [("anthropic", "claude-sonnet")]


@pytest.mark.parametrize("model", ["nonexistent", "nobody/gpt-4o"])
async def test_it_reports_unknown_aliases_and_providers_as_not_found(cast, model):
    with pytest.raises(NotFound) as caught:
        await resolve(cast, model)
    assert (caught.value.status, caught.value.code, caught.value.param) == (
        404,
        "model_not_found",
        "model",
    )
    assert model in caught.value.message


@pytest.mark.parametrize(
    "model", ["", "   ", None, 42, ["gpt-4o"], "openai/", "/gpt-4o", "x" * 301]
)
async def test_it_rejects_a_malformed_model_name(cast, model):
    with pytest.raises(InvalidRequest) as caught:
        await resolve(cast, model)
    assert caught.value.status == 400
    assert caught.value.param == "model"


# --- disabled and disallowed providers ------------------------------------------------


async def test_it_drops_disabled_and_disallowed_candidates(cast):
    await sync_to_async(route)(
        None,
        "smart",
        (cast.anthropic, "claude-sonnet"),
        (cast.gemini, "gemini-2.5-pro"),
        (cast.openai, "gpt-4o"),
    )
    await Provider.objects.filter(pk=cast.anthropic.pk).aupdate(enabled=False)
    routing_cache_clear()
    resolution = await resolve(
        cast, "smart", allowed_provider_ids=frozenset({cast.anthropic.pk, cast.openai.pk})
    )
    assert pairs(resolution) == [("openai", "gpt-4o")]


async def test_it_answers_503_when_every_candidate_is_disabled_or_disallowed(cast):
    await sync_to_async(route)(
        None, "smart", (cast.anthropic, "claude-sonnet"), (cast.openai, "gpt-4o")
    )
    await Provider.objects.filter(pk=cast.anthropic.pk).aupdate(enabled=False)
    routing_cache_clear()
    with pytest.raises(UpstreamError) as caught:
        await resolve(cast, "smart", allowed_provider_ids=frozenset({cast.gemini.pk}))
    assert (caught.value.status, caught.value.code) == (503, "no_available_provider")


async def test_it_reports_a_disabled_or_disallowed_provider_id_as_not_found(cast):
    await Provider.objects.filter(pk=cast.anthropic.pk).aupdate(enabled=False)
    routing_cache_clear()
    with pytest.raises(NotFound) as caught:
        await resolve(cast, "anthropic/claude-sonnet")
    assert caught.value.code == "model_not_found"
    with pytest.raises(NotFound):
        await resolve(cast, "openai/gpt-4o", allowed_provider_ids=frozenset({cast.gemini.pk}))
    allowed = await resolve(cast, "openai/gpt-4o", allowed_provider_ids=frozenset({cast.openai.pk}))
    assert pairs(allowed) == [("openai", "gpt-4o")]


# --- the key's allowed models ---------------------------------------------------------


async def test_it_allows_only_listed_models_when_the_key_has_a_list(cast):
    await sync_to_async(route)(None, "smart", (cast.openai, "gpt-4o"))
    await sync_to_async(route)(None, "fast", (cast.openai, "gpt-4o-mini"))
    allowed = ["smart", "anthropic/claude-sonnet", "openrouter/*"]

    assert pairs(await resolve(cast, "smart", allowed_models=allowed)) == [("openai", "gpt-4o")]
    assert pairs(await resolve(cast, "anthropic/claude-sonnet", allowed_models=allowed)) == [
        ("anthropic", "claude-sonnet")
    ]
    wildcard = await resolve(cast, "openrouter/meta-llama/llama-3-8b", allowed_models=allowed)
    assert pairs(wildcard) == [("openrouter", "meta-llama/llama-3-8b")]

    for model in ["fast", "anthropic/claude-opus", "openai/gpt-4o", "nonexistent", "openrouter"]:
        with pytest.raises(PermissionDenied) as caught:
            await resolve(cast, model, allowed_models=allowed)
        assert (caught.value.status, caught.value.code, caught.value.param) == (
            403,
            "model_not_allowed",
            "model",
        )
        assert model in caught.value.message


async def test_it_does_not_let_an_allowed_id_open_an_alias_or_the_reverse(cast):
    await sync_to_async(route)(None, "smart", (cast.openai, "gpt-4o"))
    with pytest.raises(PermissionDenied):
        await resolve(cast, "smart", allowed_models=["openai/gpt-4o", "openai/*"])
    with pytest.raises(PermissionDenied):
        await resolve(cast, "openai/gpt-4o", allowed_models=["smart"])


# --- strategies ----------------------------------------------------------------------


async def test_it_rotates_round_robin_across_calls(cast):
    await sync_to_async(route)(
        None,
        "spread",
        (cast.openai, "gpt-4o"),
        (cast.anthropic, "claude-sonnet"),
        (cast.gemini, "gemini-2.5-pro"),
        strategy=RouteStrategy.ROUND_ROBIN,
    )
    listed = [("openai", "gpt-4o"), ("anthropic", "claude-sonnet"), ("gemini", "gemini-2.5-pro")]
    orders = []
    for call in range(6):
        if call == 3:
            # another process (empty routing copies) continues the same rotation
            routing_cache_clear()
        resolution = await resolve(cast, "spread")
        assert resolution.strategy == "round_robin"
        orders.append(pairs(resolution))

    # each order is the listed one rotated; the start moves one step per call
    starts = [listed.index(order[0]) for order in orders]
    for start, order in zip(starts, orders, strict=True):
        assert order == listed[start:] + listed[:start]
    assert [(b - a) % 3 for a, b in zip(starts, starts[1:], strict=False)] == [1] * 5


async def test_it_leaves_the_rotation_alone_for_a_caller_that_only_checks_the_model(cast):
    await sync_to_async(route)(
        None,
        "spread",
        (cast.openai, "gpt-4o"),
        (cast.anthropic, "claude-sonnet"),
        strategy=RouteStrategy.ROUND_ROBIN,
    )
    first = pairs(await resolve(cast, "spread"))[0]
    for _ in range(3):  # e.g. count_tokens: listed order, no step of the rotation
        checked = await resolve(cast, "spread", ordered=False)
        assert pairs(checked) == [("openai", "gpt-4o"), ("anthropic", "claude-sonnet")]
    assert pairs(await resolve(cast, "spread"))[0] != first


async def test_it_rotates_only_over_the_candidates_left(cast):
    await sync_to_async(route)(
        None,
        "spread",
        (cast.openai, "gpt-4o"),
        (cast.anthropic, "claude-sonnet"),
        (cast.gemini, "gemini-2.5-pro"),
        strategy=RouteStrategy.ROUND_ROBIN,
    )
    allowed = frozenset({cast.openai.pk, cast.gemini.pk})
    firsts = {
        pairs(await resolve(cast, "spread", allowed_provider_ids=allowed))[0][0] for _ in range(4)
    }
    assert firsts == {"openai", "gemini"}


async def test_it_orders_cheapest_first_by_pricing_rows(cast):
    await sync_to_async(route)(
        None,
        "cheap",
        (cast.openai, "unpriced-model"),
        (cast.anthropic, "claude-sonnet"),
        (cast.openai, "gpt-4o"),
        (cast.gemini, "gemini-2.0-flash"),
        (cast.openrouter, "another-unpriced"),
        strategy=RouteStrategy.CHEAPEST_FIRST,
    )
    # the type row says gemini is cheapest; this provider's own row overrides it
    await Pricing.objects.acreate(
        provider_type="gemini",
        model="gemini-2.0-flash",
        input_per_million=Decimal("0.1"),
        output_per_million=Decimal("0.4"),
    )
    await Pricing.objects.acreate(
        provider_type="gemini",
        provider=cast.gemini,
        model="gemini-2.0-flash",
        input_per_million=Decimal("4"),
        output_per_million=Decimal("8"),
    )
    # 3 + 15 = 18: dearer than gpt-4o's 2.5 + 10 = 12.5 though its input is cheaper
    await Pricing.objects.acreate(
        provider_type="anthropic",
        provider=cast.anthropic,
        model="claude-sonnet",
        input_per_million=Decimal("3"),
        output_per_million=Decimal("15"),
    )
    await Pricing.objects.acreate(
        provider_type="openai",
        model="gpt-4o",
        input_per_million=Decimal("2.5"),
        output_per_million=Decimal("10"),
    )
    resolution = await resolve(cast, "cheap")
    assert resolution.strategy == "cheapest_first"
    assert pairs(resolution) == [
        ("gemini", "gemini-2.0-flash"),
        ("openai", "gpt-4o"),
        ("anthropic", "claude-sonnet"),
        # unknown prices last, in listed order
        ("openai", "unpriced-model"),
        ("openrouter", "another-unpriced"),
    ]


async def test_it_orders_lowest_latency_after_measurements(cast):
    slow, quick, unmeasured = unique("slow"), unique("quick"), unique("new")
    await sync_to_async(route)(
        None,
        "snappy",
        (cast.openai, slow),
        (cast.anthropic, quick),
        (cast.gemini, unmeasured),
        strategy=RouteStrategy.LOWEST_LATENCY,
    )
    first = await resolve(cast, "snappy")
    assert first.strategy == "lowest_latency"
    # nothing measured yet: listed order
    assert pairs(first) == [("openai", slow), ("anthropic", quick), ("gemini", unmeasured)]

    await record_latency(provider_id=cast.openai.pk, model=slow, latency_ms=800)
    await record_latency(provider_id=cast.anthropic.pk, model=quick, latency_ms=120)
    await record_latency(provider_id=cast.anthropic.pk, model=quick, latency_ms=140)
    # the unmeasured candidate goes first so that it gets measured
    assert pairs(await resolve(cast, "snappy")) == [
        ("gemini", unmeasured),
        ("anthropic", quick),
        ("openai", slow),
    ]

    await record_latency(provider_id=cast.gemini.pk, model=unmeasured, latency_ms=400)
    assert pairs(await resolve(cast, "snappy")) == [
        ("anthropic", quick),
        ("gemini", unmeasured),
        ("openai", slow),
    ]

    # a provider that slows down moves back, smoothly: one slow reply is not enough
    await record_latency(provider_id=cast.anthropic.pk, model=quick, latency_ms=1000)
    assert pairs(await resolve(cast, "snappy"))[0] == ("anthropic", quick)
    for _ in range(5):
        await record_latency(provider_id=cast.anthropic.pk, model=quick, latency_ms=1000)
    assert pairs(await resolve(cast, "snappy")) == [
        ("gemini", unmeasured),
        ("openai", slow),
        ("anthropic", quick),
    ]


async def test_it_ignores_latencies_that_are_not_measurements(cast):
    model = unique("model")
    await sync_to_async(route)(
        None,
        "snappy",
        (cast.openai, model),
        (cast.anthropic, model),
        strategy=RouteStrategy.LOWEST_LATENCY,
    )
    await record_latency(provider_id=cast.anthropic.pk, model=model, latency_ms=50)
    for bad in (float("nan"), float("inf"), -5):
        await record_latency(provider_id=cast.openai.pk, model=model, latency_ms=bad)
    # openai still counts as unmeasured
    assert pairs(await resolve(cast, "snappy")) == [("openai", model), ("anthropic", model)]


# --- the per-process copies ----------------------------------------------------------


async def test_it_serves_cached_routes_until_the_cache_is_cleared(cast, settings):
    settings.ROUTING_CACHE_SECONDS = 300
    smart = await sync_to_async(route)(None, "smart", (cast.openai, "gpt-4o"))
    assert pairs(await resolve(cast, "smart")) == [("openai", "gpt-4o")]

    await ModelRoute.objects.filter(pk=smart.pk).aupdate(
        candidates=[{"provider": "anthropic", "model": "claude-sonnet"}]
    )
    await Provider.objects.filter(pk=cast.openai.pk).aupdate(enabled=False)
    await sync_to_async(route)(cast.acme, "mine", (cast.gemini, "gemini-2.5-pro"))
    # within the cache period nothing is read again
    assert pairs(await resolve(cast, "smart")) == [("openai", "gpt-4o")]
    assert (await resolve(cast, "openai/gpt-4o")).candidates
    with pytest.raises(NotFound):
        await resolve(cast, "mine")

    routing_cache_clear()
    assert pairs(await resolve(cast, "smart")) == [("anthropic", "claude-sonnet")]
    assert pairs(await resolve(cast, "mine")) == [("gemini", "gemini-2.5-pro")]
    with pytest.raises(NotFound):
        await resolve(cast, "openai/gpt-4o")


async def test_it_reads_again_when_caching_is_off(cast, settings):
    settings.ROUTING_CACHE_SECONDS = 0
    smart = await sync_to_async(route)(None, "smart", (cast.openai, "gpt-4o"))
    assert pairs(await resolve(cast, "smart")) == [("openai", "gpt-4o")]
    await ModelRoute.objects.filter(pk=smart.pk).aupdate(
        candidates=[{"provider": "gemini", "model": "gemini-2.5-pro"}]
    )
    assert pairs(await resolve(cast, "smart")) == [("gemini", "gemini-2.5-pro")]


# --- GET /v1/models -------------------------------------------------------------------


def discovered(provider: Provider, *model_ids: str) -> None:
    for model_id in model_ids:
        DiscoveredModel.objects.create(
            provider=provider, model_id=model_id, name=model_id, discovered_at=timezone.now()
        )


async def test_it_lists_the_models_a_key_may_use(cast):
    await sync_to_async(route)(None, "fast", (cast.openai, "gpt-4o-mini"))
    await sync_to_async(route)(None, "smart", (cast.anthropic, "claude-sonnet"))
    await sync_to_async(route)(cast.acme, "smart", (cast.openai, "gpt-4o"))
    await sync_to_async(route)(cast.acme, "gone", (cast.gemini, "gemini-2.5-pro"))
    await sync_to_async(route)(cast.globex, "globex-only", (cast.openai, "gpt-4o"))
    await sync_to_async(discovered)(cast.openai, "gpt-4o", "gpt-4o-mini")
    await sync_to_async(discovered)(cast.openrouter, "meta-llama/llama-3-8b")
    await sync_to_async(discovered)(cast.gemini, "gemini-2.5-pro")
    await Provider.objects.filter(pk=cast.gemini.pk).aupdate(enabled=False)
    routing_cache_clear()

    listed = await models_for(
        tenant_id=cast.acme.pk,
        allowed_models=[],
        allowed_provider_ids=frozenset({cast.openai.pk, cast.openrouter.pk, cast.gemini.pk}),
    )
    assert listed == [
        # "gone" has no usable candidate; "smart" is acme's own; anthropic is not allowed
        {"id": "fast", "owned_by": "aipk", "kind": "alias"},
        {"id": "smart", "owned_by": "aipk", "kind": "alias"},
        {"id": "openai/gpt-4o", "owned_by": "openai", "kind": "model"},
        # discovered and the provider's default model, once
        {"id": "openai/gpt-4o-mini", "owned_by": "openai", "kind": "model"},
        {"id": "openrouter/meta-llama/llama-3-8b", "owned_by": "openrouter", "kind": "model"},
    ]


async def test_it_lists_only_what_the_keys_allowed_models_name(cast):
    await sync_to_async(route)(None, "fast", (cast.openai, "gpt-4o-mini"))
    await sync_to_async(route)(None, "smart", (cast.openai, "gpt-4o"))
    await sync_to_async(discovered)(cast.openai, "gpt-4o", "gpt-4o-mini")
    await sync_to_async(discovered)(cast.openrouter, "meta-llama/llama-3-8b", "qwen/qwen-2")
    await sync_to_async(discovered)(cast.anthropic, "claude-sonnet")

    listed = await models_for(
        tenant_id=cast.globex.pk,
        allowed_models=["smart", "openai/gpt-4o", "openrouter/*"],
        allowed_provider_ids=None,
    )
    assert [m["id"] for m in listed] == [
        "smart",
        "openai/gpt-4o",
        "openrouter/meta-llama/llama-3-8b",
        "openrouter/qwen/qwen-2",
    ]
