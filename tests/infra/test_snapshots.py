"""The per-process copies the request path reads instead of the database
(aipk_site/infra/snapshots.py): one read however many requests want a copy, never a
request kept waiting by a lapsed one, and never a read that a change overtook."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from aipk_site.infra.snapshots import SnapshotTable

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


class Reads:
    """A database read's stand-in: counts its calls, and can be held open until
    ``release`` so that many requests arrive while it runs."""

    def __init__(self, value: str = "v1") -> None:
        self.count = 0
        self.value = value
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def __call__(self) -> str:
        self.count += 1
        self.gate.wait(5)
        if self.fail:
            raise ConnectionError("the database went away")
        return self.value


async def _until(condition, seconds: float = 5.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_it_reads_a_missing_copy_once_however_many_requests_want_it():
    table: SnapshotTable[str, str] = SnapshotTable("test", ttl=lambda: 60.0)
    read = Reads()
    read.hold()
    waiters = [asyncio.ensure_future(table.get("k", read)) for _ in range(200)]
    await _until(lambda: read.count == 1)
    read.release()
    assert await asyncio.gather(*waiters) == ["v1"] * 200
    assert read.count == 1
    assert await table.get("k", read) == "v1" and read.count == 1


async def test_it_serves_a_lapsed_copy_while_one_refresh_runs_behind_the_requests():
    ttl = [60.0]
    table: SnapshotTable[str, str] = SnapshotTable("test", ttl=lambda: ttl[0])
    read = Reads()
    assert await table.get("k", read) == "v1"
    table._entries["k"] = ("v1", time.monotonic() - 1)  # the safety TTL has passed
    read.value = "v2"
    read.hold()
    # no request waits for the refresh: all get the old copy at once
    answers = await asyncio.wait_for(
        asyncio.gather(*(table.get("k", read) for _ in range(500))), timeout=2
    )
    assert answers == ["v1"] * 500
    read.release()
    await _until(lambda: table._entries["k"][0] == "v2")
    assert read.count == 2  # the first read and ONE refresh
    assert await table.get("k", read) == "v2"


async def test_it_keeps_the_lapsed_copy_and_says_so_when_its_refresh_fails(caplog):
    table: SnapshotTable[str, str] = SnapshotTable("prices", ttl=lambda: 60.0)
    read = Reads()
    await table.get("k", read)
    table._entries["k"] = ("v1", time.monotonic() - 1)
    read.fail = True
    with caplog.at_level(logging.WARNING, logger="aipk_site.infra.snapshots"):
        assert await table.get("k", read) == "v1"
        await _until(lambda: not table._reads)
    assert "prices: refreshing a copy failed (ConnectionError)" in caplog.text
    # with the database down, the requests of the next second do not each try again
    for _ in range(100):
        assert await table.get("k", read) == "v1"
    assert read.count == 2
    # once that second is over, the next request tries again, and gets the new copy
    read.fail = False
    read.value = "v2"
    table._entries["k"] = ("v1", time.monotonic() - 1)
    assert await table.get("k", read) == "v1"
    await _until(lambda: table._entries["k"][0] == "v2")


async def test_it_never_keeps_or_hands_out_a_read_that_a_change_overtook():
    table: SnapshotTable[str, str] = SnapshotTable("test", ttl=lambda: 60.0)
    read = Reads("before the change")
    read.hold()
    early = asyncio.ensure_future(table.get("k", read))
    await _until(lambda: read.count == 1)
    table.drop()  # a change event arrives while the old row is being read
    after = Reads("after the change")
    late = asyncio.ensure_future(table.get("k", after))
    read.release()
    assert await early == "before the change"
    assert await late == "after the change"  # not the read that started before the drop
    assert table._entries["k"][0] == "after the change"


async def test_it_drops_only_the_copies_a_change_names():
    table: SnapshotTable[tuple[int, int], str] = SnapshotTable("test", ttl=lambda: 60.0)
    for key in [(1, 1), (1, 2), (2, 1)]:
        await table.get(key, lambda: "x")
    table.drop(lambda key: key[0] == 1)
    assert list(table._entries) == [(2, 1)]


async def test_it_keeps_nothing_when_the_ttl_is_zero_but_still_reads_once_for_many():
    table: SnapshotTable[str, str] = SnapshotTable("test", ttl=lambda: 0.0)
    read = Reads()
    read.hold()
    waiters = [asyncio.ensure_future(table.get("k", read)) for _ in range(20)]
    await _until(lambda: read.count == 1)
    read.release()
    await asyncio.gather(*waiters)
    assert read.count == 1 and len(table) == 0
    await table.get("k", read)
    assert read.count == 2


async def test_it_starts_over_rather_than_grow_past_its_bound():
    table: SnapshotTable[str, str] = SnapshotTable("test", ttl=lambda: 60.0, max_entries=10)
    for n in range(35):
        await table.get(f"model-{n}", lambda: "price")
    assert len(table) <= 10


async def test_it_lets_a_request_leave_without_cancelling_the_read_others_wait_for():
    table: SnapshotTable[str, str] = SnapshotTable("test", ttl=lambda: 60.0)
    read = Reads()
    read.hold()
    leaving = asyncio.ensure_future(table.get("k", read))
    staying = asyncio.ensure_future(table.get("k", read))
    await _until(lambda: read.count == 1)
    leaving.cancel()
    read.release()
    assert await staying == "v1"
    assert read.count == 1
