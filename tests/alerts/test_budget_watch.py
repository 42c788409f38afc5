"""The budget watch as the usage writer drives it between resyncs: the month's spend is
read from the usage records once, then this process's stored costs are added in memory,
so a batch that crosses nothing costs no query at all."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.utils import timezone

from tenants_app.models import AlertDelivery, UsageRecord, VirtualKey
from tenants_app.services.alerts import alert_channel_create, budget_spend_observe

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def key(tenant):
    return VirtualKey.objects.create(
        tenant=tenant, name="k", prefix="aipk-abc", key_hash="h" * 64, monthly_budget_usd=10
    )


def stored(key, cost: str) -> dict:
    """A usage row as the writer has just stored it."""
    row = {
        "request_id": uuid.uuid4().hex,
        "tenant_id": key.tenant_id,
        "virtual_key_id": key.pk,
        "status": "success",
        "cost_usd": Decimal(cost),
        "created_at": timezone.now(),
    }
    UsageRecord.objects.create(**row)
    return row


def test_it_adds_stored_costs_in_memory_between_resyncs(
    tenant, key, receiver, settings, django_assert_num_queries
):
    settings.ALERT_BUDGET_RESYNC_SECONDS = 3600
    alert_channel_create(tenant=tenant, name="ops", kind="slack", target=receiver.url)
    assert budget_spend_observe([stored(key, "1")]) == 0  # 10 %: reads budgets and spend

    batch, refused = [stored(key, "2"), stored(key, "1")], {**stored(key, "0"), "status": "refused"}
    with django_assert_num_queries(0):
        assert budget_spend_observe(batch) == 0  # 40 %
        assert budget_spend_observe([refused]) == 0

    assert budget_spend_observe([stored(key, "1.5")]) == 1  # 55 %: key crossed 50 %
    assert budget_spend_observe([stored(key, "0.1")]) == 0  # no second alert
    assert [b["text"].splitlines()[0] for b in receiver.bodies()] == [
        "[aipk] key k (aipk-abc…) has used 50% of its "
        f"{timezone.now():%Y-%m} budget ($5.50 of $10.00)"
    ]
    assert AlertDelivery.objects.get().tenant == tenant


def test_it_never_raises_into_the_writer(tenant, key, caplog):
    assert budget_spend_observe([{**stored(key, "9"), "cost_usd": "not a number"}]) == 0
    assert "alerts: budget check failed" in caplog.text
