"""Which requests measure latency: only those a lowest-latency route served, since only such
routes read the averages (a shared-store round trip per request saved everywhere else)."""

from __future__ import annotations

import openai
import pytest
from asgiref.sync import async_to_sync

from aipk_site.gateway.routing import _latency_key
from aipk_site.infra.state import state_store
from tenants_app.models import ModelRoute, RouteStrategy
from tests.gateway.conftest import MODELS

pytestmark = pytest.mark.django_db(transaction=True)


def ask(world, gateway_server, model: str) -> None:
    client = openai.OpenAI(
        api_key=world.secret, base_url=gateway_server.openai_base_url, max_retries=0
    )
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


def average(world) -> dict | None:
    key = _latency_key(world.providers["openai"].pk, MODELS["openai"])
    return async_to_sync(state_store().get)(key)


def test_it_measures_the_candidates_of_a_lowest_latency_route(world, gateway_server):
    name = world.providers["openai"].name
    ModelRoute.objects.create(
        tenant=world.tenant,
        alias="fastest",
        strategy=RouteStrategy.LOWEST_LATENCY,
        candidates=[{"provider": name, "model": MODELS["openai"]}],
    )
    ask(world, gateway_server, "fastest")
    ask(world, gateway_server, "fastest")
    assert average(world)["samples"] == 2


def test_it_does_not_measure_a_request_that_named_its_provider_and_model(world, gateway_server):
    ask(world, gateway_server, world.model("openai"))
    assert average(world) is None
