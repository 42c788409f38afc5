"""The pricing page (/console/pricing/): every price with each of its rates and where it
came from (the built-in table or an admin), the models that answered requests with no
price (the ledger charged them nothing), and -- for staff only, as in the management API
-- setting and editing prices, validated, audited and marked as set by an admin."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from providers_app.models import Provider
from tenants_app.models import AuditEvent, Pricing, UsageRecord, UsageStatus
from tenants_app.services.pricing import price_for, pricing_cache_clear, pricing_load_bundled

URL = "/console/pricing/"


@pytest.fixture(autouse=True)
def fresh_prices():
    # prices are cached per process; each test starts from its own rows
    pricing_cache_clear()
    yield
    pricing_cache_clear()


@pytest.fixture
def openai(db):
    return Provider.objects.create(name="openai-prod", type="openai")


@pytest.fixture
def claude(db):
    return Provider.objects.create(name="claude", type="anthropic")


def used(tenant, provider, model, *, n=1, days_ago=0):
    for i in range(n):
        UsageRecord.objects.create(
            request_id=f"req-{tenant.slug}-{model}-{days_ago}-{i}",
            tenant=tenant,
            provider=provider,
            provider_name=provider.name,
            model=model,
            status=UsageStatus.SUCCESS,
            prompt_tokens=10,
            completion_tokens=5,
            created_at=timezone.now() - dt.timedelta(days=days_ago),
        )


def snapshot() -> tuple:
    return list(Pricing.objects.order_by("pk").values()), AuditEvent.objects.count()


def row_of(body: str, text: str) -> str:
    start = body.rindex("<tr", 0, body.index(text))
    return body[start : body.index("</tr>", start)]


@pytest.mark.parametrize("who", ["staff", "owner", "teammate", "viewer", "outsider"])
def test_it_shows_every_signed_in_user_each_price_and_its_source(request, client_as, who, claude):
    pricing_load_bundled()
    Pricing.objects.create(
        provider=claude,
        provider_type="anthropic",
        model="claude-house-model",
        input_per_million=Decimal("2.5"),
        output_per_million=Decimal("12"),
        source="manual",
    )

    response = client_as(request.getfixturevalue(who)).get(URL)
    body = response.content.decode()

    assert response.status_code == 200
    bundled = row_of(body, 'title="claude-sonnet-4-20250514"')
    assert ">3<" in bundled and ">15<" in bundled and ">0.3<" in bundled and ">3.75<" in bundled
    assert "built-in table" in bundled and "every anthropic account" in bundled
    no_cache_write = row_of(body, 'title="gpt-4o-mini"')
    assert ">0.075<" in no_cache_write and "= input" in no_cache_write
    manual = row_of(body, 'title="claude-house-model"')
    assert "set by an admin" in manual and 'title="claude"' in manual
    assert ">2.5<" in manual and ">12<" in manual


def test_it_sends_a_visitor_to_sign_in(client, db):
    assert client.get(URL)["Location"].startswith("/console/login/")


def test_it_flags_models_used_without_a_price(client_as, staff, tenant, openai, claude):
    pricing_load_bundled()
    used(tenant, openai, "gpt-4o-mini", n=2)  # priced by the table
    used(tenant, openai, "gpt-4o-2024-05-13", n=3)  # a snapshot: never its base's price
    used(tenant, claude, "claude-house-model", days_ago=45)  # too long ago to count

    body = client_as(staff).get(URL).content.decode()
    gaps = body[body.index("Used without a price") : body.index("<h2>Prices</h2>")]

    assert "charged them nothing" in gaps
    gap = row_of(gaps, 'title="gpt-4o-2024-05-13"')
    assert "openai-prod" in gap and "<td>3</td>" in gap
    assert "gpt-4o-mini" not in gaps and "claude-house-model" not in gaps


def test_it_counts_a_providers_fallback_price_as_a_price(client_as, staff, tenant, openai):
    used(tenant, openai, "house-model")
    openai.settings = {"fallback_input_per_million": 1, "fallback_output_per_million": 2}
    openai.save()

    body = client_as(staff).get(URL).content.decode()

    assert "Every model used in the last 30 days has a price." in body


def test_it_shows_a_member_only_the_gaps_of_their_own_tenants(
    client_as, teammate, outsider, tenant, other_tenant, openai
):
    used(tenant, openai, "acme-model")
    used(other_tenant, openai, "globex-model")

    member = client_as(teammate).get(URL).content.decode()
    other = client_as(outsider).get(URL).content.decode()

    assert "acme-model" in member and "globex-model" not in member
    assert "globex-model" in other and "acme-model" not in other


@pytest.mark.parametrize("who", ["owner", "teammate", "viewer", "outsider"])
def test_it_lets_only_staff_set_prices(request, client_as, who, openai):
    price = Pricing.objects.create(
        provider_type="openai", model="gpt-x", input_per_million=1, output_per_million=2
    )
    client = client_as(request.getfixturevalue(who))
    before = snapshot()
    data = {
        "provider_type": "openai",
        "model": "m",
        "input_per_million": "1",
        "output_per_million": "1",
    }

    page = client.get(URL).content.decode()

    assert "Set a price" not in page and f"/console/pricing/{price.pk}/" not in page
    assert client.post(URL, data).status_code == 403
    assert client.get(f"{URL}{price.pk}/").status_code == 403
    assert client.post(f"{URL}{price.pk}/", data).status_code == 403
    assert snapshot() == before


def test_it_lets_staff_set_a_price_for_an_account_audited(client_as, staff, openai):
    response = client_as(staff).post(
        URL,
        {
            "provider_type": "openai",
            "provider": "openai-prod",
            "model": " house-model ",
            "input_per_million": "0.5",
            "output_per_million": "1.25",
            "cached_input_per_million": "0.05",
            "cache_write_per_million": "",
        },
    )

    assert response.status_code == 302
    price = Pricing.objects.get(model="house-model")
    assert price.provider == openai and price.source == "manual"
    assert price.input_per_million == Decimal("0.5")
    assert price.cached_input_per_million == Decimal("0.05")
    assert price.cache_write_per_million is None
    assert price_for(openai, "house-model").output_per_million == Decimal("1.25")
    event = AuditEvent.objects.get(action="pricing.create")
    assert event.actor == staff and event.ip_address == "127.0.0.1"
    assert event.changes["provider"] == "openai-prod"


def test_it_lets_staff_edit_a_built_in_price_which_then_counts_as_set_by_an_admin(
    client_as, staff, openai
):
    pricing_load_bundled()
    price = Pricing.objects.get(provider=None, provider_type="openai", model="gpt-4o-mini")
    client = client_as(staff)
    assert price_for(openai, "gpt-4o-mini").input_per_million == Decimal("0.15")

    page = client.get(f"{URL}{price.pk}/").content.decode()
    response = client.post(
        f"{URL}{price.pk}/",
        {
            "input_per_million": "0.2",
            "output_per_million": "0.8",
            "cached_input_per_million": "0.1",
        },
    )

    assert "from the built-in table" in page and 'value="0.150000"' in page
    assert response.status_code == 302
    price.refresh_from_db()
    assert (price.input_per_million, price.output_per_million) == (Decimal("0.2"), Decimal("0.8"))
    assert price.source == "manual" and price.cache_write_per_million is None
    assert price_for(openai, "gpt-4o-mini").input_per_million == Decimal("0.2")
    event = AuditEvent.objects.get(action="pricing.update")
    assert event.actor == staff and event.ip_address == "127.0.0.1"
    assert event.changes["before"]["source"] == "bundled"
    # reloading the table leaves the admin's figure alone
    assert pricing_load_bundled()["kept_manual"] == 1
    price.refresh_from_db()
    assert price.input_per_million == Decimal("0.2")


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"input_per_million": "-1"}, "input_per_million", "greater than or equal to 0"),
        ({"output_per_million": "cheap"}, "output_per_million", "Enter a number"),
        ({"cached_input_per_million": "1e9"}, "cached_input_per_million", "less than or equal"),
        ({"cache_write_per_million": "0.0000001"}, "cache_write_per_million", "6 decimal places"),
        ({"input_per_million": ""}, "input_per_million", "This field is required"),
        ({"model": ""}, "model", "This field is required"),
        ({"provider_type": "nope"}, "provider_type", "Select a valid choice"),
        ({"provider": "ghost"}, "provider", "Select a valid choice"),
        ({"provider_type": "anthropic"}, "provider", "is a openai account, not anthropic"),
    ],
)
def test_it_shows_what_is_wrong_beside_the_field(client_as, staff, openai, changes, field, message):
    data = {
        "provider_type": "openai",
        "provider": "openai-prod",
        "model": "house-model",
        "input_per_million": "1",
        "output_per_million": "2",
        **changes,
    }
    before = snapshot()

    response = client_as(staff).post(URL, data)
    body = response.content.decode()

    assert response.status_code == 422
    block = body[body.index(f'id="id_{field}"') :]
    assert message in block[: block.index("</div>")]
    assert snapshot() == before


def test_it_answers_an_unknown_price_with_not_found(client_as, staff, db):
    assert client_as(staff).get(f"{URL}999/").status_code == 404
