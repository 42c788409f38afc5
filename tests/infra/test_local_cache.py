"""The embedded cache: LocMemCache without memcached's key check, plus live objects for
admission's state (aipk_site/infra/local_cache.py)."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import async_to_sync

from aipk_site.infra import local_cache
from aipk_site.infra.local_cache import FastLocMemCache, LocalObjects


class Unpicklable:
    def __reduce__(self):
        raise AssertionError("objects must never be pickled")


def test_it_keeps_objects_as_they_are_without_pickling():
    objects = LocalObjects()
    value = Unpicklable()
    objects.set("k", value, ttl=60)
    assert objects.get_many(["k", "missing"]) == {"k": value}


def test_it_forgets_an_object_when_its_ttl_is_over():
    objects = LocalObjects()
    objects.set("short", 1, ttl=0.01)
    objects.set("gone", 1, ttl=0)
    time.sleep(0.02)
    assert objects.get_many(["short", "gone"]) == {}


def test_it_sweeps_expired_objects_nobody_reads_again(monkeypatch):
    monkeypatch.setattr(local_cache, "SWEEP_SECONDS", 0.0)
    objects = LocalObjects()
    for i in range(100):
        objects.set(f"window:{i}", i, ttl=0.001)
    time.sleep(0.01)
    objects.set("fresh", 1, ttl=60)  # a write past the sweep time sweeps
    assert len(objects) == 1


def test_it_accepts_keys_memcached_would_refuse():
    cache = FastLocMemCache("test-fast-locmem", {})
    key = "a key with spaces " * 20  # > 250 characters, spaces
    cache.set(key, "v")
    assert cache.get(key) == "v"


def test_it_shares_objects_between_cache_objects_of_one_location_and_clears_them():
    one = FastLocMemCache("test-shared", {})
    two = FastLocMemCache("test-shared", {})
    one.objects.set("k", "v", ttl=60)
    assert two.objects.get_many(["k"]) == {"k": "v"}
    two.clear()
    assert one.objects.get_many(["k"]) == {}


@pytest.mark.django_db
def test_it_resets_admission_counters_when_the_cache_is_cleared(settings):
    if "RedisCache" in settings.CACHES["default"]["BACKEND"]:
        pytest.skip("admission keeps live objects only with the local-memory cache")
    from django.core.cache import cache

    from aipk_site.gateway.admission import Limits, admit
    from aipk_site.gateway.admission.store import ObjectAdmissionStore, admission_store
    from aipk_site.infra.errors import LimitExceeded

    assert isinstance(admission_store(), ObjectAdmissionStore)
    limits = Limits(rpm=1)

    def one(request_id: str):
        return async_to_sync(admit)(
            request_id=request_id,
            key_id=987654,
            tenant_id=987654,
            key_limits=limits,
            tenant_limits=Limits(),
            estimated_tokens=10,
            estimated_cost_micro=0,
            stream=False,
            lease_seconds=60,
        )

    one("first")
    with pytest.raises(LimitExceeded):
        one("second")
    cache.clear()
    one("third")
