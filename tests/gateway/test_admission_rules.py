"""The pure admission steps: what is admitted, what is refused, what is stored."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from aipk_site.gateway.admission.rules import (
    Counters,
    Held,
    Lease,
    Limits,
    Refusal,
    SettleScope,
    admit_step,
    duration,
    month_bounds,
    month_id,
    month_reset,
    rate_headers,
    refusal_details,
    settle_step,
    usd,
    window_id,
    window_reset,
)

# 10.25 s into a window; 2026-02-25 UTC
NOW = 1_772_049_660.0 + 10.25
MAX = 900.0  # lease seconds
MONTH = "202602"


def step(key=None, tenant=None, *, key_limits=None, tenant_limits=None, **kw):
    args = {
        "request_id": "r1",
        "tokens": 100,
        "cost": 50,
        "stream": False,
        "now": NOW,
        "month": MONTH,
        "lease_seconds": MAX,
    }
    args.update(kw)
    return admit_step(
        key or Counters(spend=0),
        tenant or Counters(spend=0),
        key_limits=key_limits or Limits(),
        tenant_limits=tenant_limits or Limits(),
        **args,
    )


def test_it_numbers_fixed_sixty_second_windows():
    assert window_id(NOW) == 29_534_161
    assert window_reset(NOW) == pytest.approx(49.75)
    assert window_id(29_534_162 * 60.0) == 29_534_162
    assert window_reset(29_534_162 * 60.0) == 60.0


def test_it_takes_the_utc_calendar_month():
    start, end = month_bounds(NOW)
    assert (start, end) == (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
    assert month_id(NOW) == "202602"
    assert month_reset(NOW) == pytest.approx(end.timestamp() - NOW)
    december = datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
    assert month_bounds(december)[1] == datetime(2026, 1, 1, tzinfo=UTC)
    assert month_reset(december) == pytest.approx(1.0)


def test_it_reserves_on_key_and_tenant_together():
    result = step(
        Counters(requests=1, tokens=10, spend=5),
        Counters(requests=7, tokens=70, spend=500),
    )
    assert result.admitted and result.refusal is None
    lease = {"r1": Lease(expires=NOW + MAX, cost=50, month=MONTH)}
    assert result.key == Counters(requests=2, tokens=110, spend=55, streams={}, leases=lease)
    assert result.tenant == Counters(requests=8, tokens=170, spend=550, streams={}, leases=lease)


@pytest.mark.parametrize(
    ("key_limits", "tenant_limits", "code"),
    [
        (Limits(rpm=2), Limits(), "key_rpm"),
        (Limits(tpm=150), Limits(), "key_tpm"),
        (Limits(budget_micro_usd=89), Limits(), "key_budget"),
        (Limits(), Limits(rpm=8), "tenant_rpm"),
        (Limits(), Limits(tpm=200), "tenant_tpm"),
        (Limits(), Limits(budget_micro_usd=549), "tenant_budget"),
        # key first, then rpm → tpm → concurrency → budget
        (Limits(budget_micro_usd=0), Limits(rpm=1), "key_budget"),
        (Limits(rpm=2, tpm=1), Limits(), "key_rpm"),
    ],
)
def test_it_refuses_the_first_limit_that_would_be_exceeded(key_limits, tenant_limits, code):
    key = Counters(requests=2, tokens=60, spend=40)
    tenant = Counters(requests=8, tokens=110, spend=500)
    result = step(key, tenant, key_limits=key_limits, tenant_limits=tenant_limits)
    assert not result.admitted
    assert result.refusal.code == code
    assert (result.key, result.tenant) == (key, tenant)  # nothing reserved


def test_it_admits_up_to_the_limit_exactly():
    key = Counters(requests=1, tokens=900, spend=950)
    limits = Limits(rpm=2, tpm=1000, budget_micro_usd=1000)
    assert step(key, key_limits=limits).admitted
    assert not step(key, key_limits=limits, tokens=101).admitted
    assert not step(key, key_limits=limits, cost=51).admitted


def test_it_refuses_a_spent_budget_even_for_a_free_request():
    result = step(Counters(spend=1000), key_limits=Limits(budget_micro_usd=1000), cost=0)
    assert result.refusal == Refusal("key", "budget")
    assert step(Counters(spend=999), key_limits=Limits(budget_micro_usd=1000), cost=0).admitted


def test_it_takes_a_stream_slot_only_where_a_concurrency_limit_applies():
    result = step(key_limits=Limits(max_concurrent=2), stream=True, request_id="s1")
    assert result.key.streams == {"s1": NOW + MAX}  # held until its lease expires
    assert result.tenant.streams == {}
    assert step(key_limits=Limits(max_concurrent=2), stream=False).key.streams == {}


def test_it_refuses_a_stream_over_the_concurrency_limit_but_not_a_plain_request():
    key = Counters(spend=0, streams={"a": NOW + 5, "b": NOW + 1})
    limits = Limits(max_concurrent=2)
    assert step(key, key_limits=limits, stream=True).refusal.code == "key_concurrency"
    assert step(key, key_limits=limits, stream=False).admitted
    tenant_limited = step(key, tenant_limits=Limits(max_concurrent=0), stream=True)
    assert tenant_limited.refusal.code == "tenant_concurrency"


def test_it_drops_streams_whose_lease_expired():
    key = Counters(spend=0, streams={"dead": NOW, "alive": NOW + 1})
    result = step(key, key_limits=Limits(max_concurrent=2), stream=True, request_id="new")
    assert result.admitted
    assert result.key.streams == {"alive": NOW + 1, "new": NOW + MAX}
    refused = step(key, key_limits=Limits(max_concurrent=1), stream=True)
    assert refused.refusal.code == "key_concurrency"
    assert refused.key.streams == {"alive": NOW + 1}  # still dropped from the store


def test_it_asks_for_a_seed_when_a_month_counter_is_missing():
    result = step(Counters(), Counters(), key_limits=Limits(rpm=1))
    assert not result.admitted
    assert result.needs_seed == ("key", "tenant")
    assert step(Counters(spend=1), Counters(), key_seed=5).needs_seed == ("tenant",)


def test_it_seeds_missing_spend_and_ignores_seeds_for_present_spend():
    result = step(Counters(), Counters(spend=7), key_seed=300, tenant_seed=999)
    assert (result.key.spend, result.tenant.spend) == (350, 57)
    refused = step(
        Counters(), Counters(spend=0), key_seed=990, key_limits=Limits(budget_micro_usd=1000)
    )
    assert refused.refusal.code == "key_budget"
    assert refused.key.spend == 990  # the seed is stored even when refused


HELD = {"r1": Lease(expires=NOW + MAX, cost=100, month=MONTH)}


def test_it_settles_the_difference_and_frees_the_slot():
    scope = SettleScope(tokens=500, spend=800, streams={"r1": NOW, "r2": NOW}, leases=HELD)
    applied, key, tenant = settle_step(
        scope,
        scope,
        reserved=True,
        request_id="r1",
        token_delta=-300,
        cost_delta=-20,
        real_cost=80,
    )
    assert applied
    assert key == tenant == SettleScope(tokens=200, spend=780, streams={"r2": NOW}, leases={})


def test_it_settles_only_counters_still_held_and_never_below_zero():
    applied, key, tenant = settle_step(
        SettleScope(tokens=None, spend=10, streams={}, leases=HELD),
        SettleScope(tokens=5, spend=None, streams={}, leases=HELD),
        reserved=True,
        request_id="r1",
        token_delta=-50,
        cost_delta=-40,
        real_cost=60,
    )
    assert applied
    assert key == SettleScope(tokens=None, spend=0, streams={})
    assert tenant == SettleScope(tokens=0, spend=None, streams={})


def test_it_settles_nothing_without_a_reservation():
    scope = SettleScope(tokens=500, spend=800, streams={"r1": NOW})
    assert settle_step(
        scope,
        scope,
        reserved=False,
        request_id="r1",
        token_delta=-1,
        cost_delta=-1,
        real_cost=1,
    ) == (False, scope, scope)


def test_it_reclaims_what_expired_leases_hold_before_checking():
    key = Counters(
        spend=900,
        streams={"dead": NOW, "live": NOW + 1},
        leases={
            "dead": Lease(expires=NOW, cost=600, month=MONTH),
            "old-month": Lease(expires=NOW - 5, cost=50, month="202601"),
            "live": Lease(expires=NOW + 1, cost=200, month=MONTH),
        },
    )
    limits = Limits(budget_micro_usd=1000, max_concurrent=2)
    # without the reclaim, 900 + 50 would not fit and the dead stream would hold the slot
    result = step(key, key_limits=limits, cost=50, stream=True, request_id="new")
    assert result.admitted, result.refusal
    assert result.key.spend == 900 - 600 + 50  # a lease of another month holds nothing here
    assert set(result.key.leases) == {"live", "new"}
    assert result.key.streams == {"live": NOW + 1, "new": NOW + MAX}
    # a refusal stores the reclaim too
    refused = step(key, key_limits=Limits(budget_micro_usd=300), cost=50)
    assert refused.refusal.code == "key_budget" and refused.key.spend == 300
    assert set(refused.key.leases) == {"live"}


def test_it_charges_the_whole_real_cost_when_settled_after_its_lease_was_reclaimed():
    reclaimed = SettleScope(tokens=None, spend=300, streams={}, leases={})
    still_held = SettleScope(tokens=None, spend=900, streams={}, leases=HELD)
    applied, key, tenant = settle_step(
        reclaimed,
        still_held,
        reserved=True,
        request_id="r1",
        token_delta=0,
        cost_delta=-30,
        real_cost=70,
    )
    assert applied
    assert (key.spend, tenant.spend) == (370, 870)


def test_it_drops_old_leases_when_it_seeds_a_month():
    # the recorded spend holds no reservation: an old lease must not come off it
    old = {"x": Lease(expires=NOW - 1, cost=500, month=MONTH)}
    result = step(Counters(leases=old), Counters(spend=0), key_seed=600)
    assert result.key.spend == 650 and set(result.key.leases) == {"r1"}


def test_it_updates_the_books_it_is_given_in_place():
    # what lets a store keep its books as live objects: no copy of every lease per call
    streams, leases = Held({"old": NOW - 1}), Held({"old": Lease(NOW - 1, 30, MONTH)})
    key = Counters(spend=100, streams=streams, leases=leases)
    result = step(key, key_limits=Limits(max_concurrent=1), stream=True, request_id="new")
    assert result.key.streams is streams and result.key.leases is leases
    assert set(streams) == set(leases) == {"new"} and result.key.spend == 100 - 30 + 50
    scope = SettleScope(tokens=None, spend=result.key.spend, streams=streams, leases=leases)
    settle_step(
        scope, scope, reserved=True, request_id="new", token_delta=0, cost_delta=0, real_cost=0
    )
    assert len(streams) == len(leases) == 0


def test_it_gives_back_exactly_the_expired_leases_of_a_book_in_expiry_order():
    book = Held()
    expiry = {f"r{i}": NOW + (i * 7919) % 500 for i in range(500)}  # shuffled expiries
    for rid, expires in expiry.items():
        book.put(rid, Lease(expires, 1, MONTH))
    # settled before they expired: 400 stale heap entries, rebuilt away on the way
    for i in range(500):
        if i % 5:
            assert book.pop(f"r{i}") is not None
    assert book.pop("r1") is None  # a second settle finds nothing
    kept = {rid: e for rid, e in expiry.items() if int(rid[1:]) % 5 == 0}

    out = book.expire(NOW + 249)

    assert [lease.expires for lease in out] == sorted(e for e in kept.values() if e <= NOW + 249)
    assert dict(book) == {rid: Lease(e, 1, MONTH) for rid, e in kept.items() if e > NOW + 249}
    assert book.last >= max(kept.values())  # a store keeps the book at least this long
    rest = len(book)
    assert rest > 0 and len(book.expire(NOW + 500)) == rest and not book

    # a request id held again after a settle keeps its new expiry, not the old one's
    book.put("again", Lease(NOW + 1, 1, MONTH))
    book.pop("again")
    book.put("again", Lease(NOW + 100, 1, MONTH))
    assert book.expire(NOW + 1) == [] and set(book) == {"again"}


def test_it_reports_headers_for_the_tighter_limit_only_when_set():
    key = Counters(requests=3, tokens=900, spend=0)
    tenant = Counters(requests=40, tokens=1000, spend=0)
    headers = rate_headers(
        key,
        tenant,
        key_limits=Limits(rpm=10, tpm=1000),
        tenant_limits=Limits(rpm=42, tpm=50_000),
        now=NOW,
    )
    assert headers == {
        "x-ratelimit-limit-requests": "42",
        "x-ratelimit-remaining-requests": "2",
        "x-ratelimit-reset-requests": "50s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "100",
        "x-ratelimit-reset-tokens": "50s",
    }
    assert rate_headers(key, tenant, key_limits=Limits(), tenant_limits=Limits(), now=NOW) == {}
    only_tokens = rate_headers(
        key, tenant, key_limits=Limits(tpm=800), tenant_limits=Limits(), now=NOW
    )
    assert only_tokens["x-ratelimit-remaining-tokens"] == "0"
    assert "x-ratelimit-limit-requests" not in only_tokens


def test_it_says_which_limit_its_value_and_when_it_resets():
    assert refusal_details(Refusal("key", "rpm"), Limits(rpm=60), tokens=1, now=NOW) == (
        "key rate limit of 60 requests per minute reached; resets in 50s",
        50,
    )
    assert refusal_details(Refusal("tenant", "tpm"), Limits(tpm=5000), tokens=1, now=NOW) == (
        "tenant token limit of 5000 tokens per minute reached; resets in 50s",
        50,
    )
    too_big, _ = refusal_details(Refusal("key", "tpm"), Limits(tpm=100), tokens=300, now=NOW)
    assert "below this request's estimate of 300 tokens" in too_big
    message, wait = refusal_details(
        Refusal("key", "budget"), Limits(budget_micro_usd=12_500_000), tokens=1, now=NOW
    )
    assert message == "key monthly budget of $12.50 reached; resets in 3d3h"
    assert wait == math.ceil(datetime(2026, 3, 1, tzinfo=UTC).timestamp() - NOW)
    message, wait = refusal_details(
        Refusal("key", "concurrency"), Limits(max_concurrent=2), tokens=1, now=NOW
    )
    assert message.startswith("key limit of 2 concurrent streams reached")
    assert wait == 1


def test_it_formats_durations_and_dollars():
    assert [duration(s) for s in (0.2, 12, 59.5, 60, 303, 7200, 90061)] == [
        "1s",
        "12s",
        "1m0s",
        "1m0s",
        "5m3s",
        "2h0m",
        "1d1h",
    ]
    assert [usd(m) for m in (0, 12_500_000, 1_234_567, 500)] == [
        "$0.00",
        "$12.50",
        "$1.234567",
        "$0.0005",
    ]
