"""The wait for a stream's next bytes: each read bounded on its own, one timer per stream.

``ReadDeadline`` replaces an ``asyncio.timeout`` per read on the relay's hot path; it
must keep that contract exactly: a read that waits too long is a ``TimeoutError``, a
read that keeps up never is (however long the stream lasts), and a cancellation that
comes from anyone else stays a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from providers_app.kit.adapters.streaming import ReadDeadline


async def test_it_times_out_a_read_that_waits_longer_than_its_own_wait():
    waits = ReadDeadline()
    never: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        await waits.read(lambda: never, 0.05)
    waits.close()


async def test_it_never_times_out_reads_that_each_keep_up_over_a_stream_longer_than_the_wait():
    waits = ReadDeadline()

    async def chunk() -> bytes:
        await asyncio.sleep(0.02)
        return b"x"

    got = [await waits.read(chunk, 0.05) for _ in range(12)]  # 0.24 s in all
    waits.close()
    assert got == [b"x"] * 12


async def test_it_applies_a_shorter_wait_that_comes_after_a_longer_one():
    waits = ReadDeadline()

    async def quick() -> bytes:
        return b"x"

    assert await waits.read(quick, 30.0) == b"x"  # leaves a timer 30 s away
    never: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(waits.read(lambda: never, 0.05), 2.0)
    waits.close()


async def test_it_leaves_a_cancellation_from_elsewhere_a_cancellation():
    waits = ReadDeadline()
    never: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(waits.read(lambda: never, 5.0))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    waits.close()


async def test_it_leaves_the_task_uncancelled_after_a_timeout_so_it_can_go_on():
    waits = ReadDeadline()
    never: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        await waits.read(lambda: never, 0.02)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.01)  # would raise CancelledError if a cancel were still pending
    waits.close()
