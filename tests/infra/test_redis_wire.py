"""The request path's pipelined Redis connection (aipk_site.infra.redis_wire).

Against the real Redis server when REDIS_URL is set; the fault cases (a server that
never answers, one that refuses or hangs up) against small loopback servers, so they
run everywhere.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aipk_site.infra.redis_wire import PipelinedRedis, pack, supports

REDIS_URL = os.environ.get("REDIS_URL", "")
NEEDS_REDIS = pytest.mark.skipif(not REDIS_URL, reason="needs a Redis server (REDIS_URL)")


def key() -> str:
    return f"test:wire:{uuid.uuid4().hex}"


def test_it_serves_plain_and_unix_locations_and_leaves_tls_to_redis_py():
    assert supports("redis://127.0.0.1:6379/0")
    assert supports("unix:///run/redis.sock?db=2")
    assert not supports("rediss://cache.example:6380/0")


def test_it_encodes_commands_as_resp_arrays_of_bulk_strings():
    assert pack(["SET", "k", b"v\r\n", 7, 0.1]) == (
        b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n$1\r\n7\r\n$3\r\n0.1\r\n"
    )
    with pytest.raises(TypeError):
        pack(["SET", "k", True])


@NEEDS_REDIS
def test_it_answers_many_concurrent_commands_in_order_over_one_connection():
    name = key()

    async def go() -> tuple[list[int], int]:
        client = PipelinedRedis(REDIS_URL, socket_timeout=5)
        replies = await asyncio.gather(*(client.execute("INCR", name) for _ in range(300)))
        connection = client._protocol
        await client.execute("DEL", name)
        assert client._protocol is connection
        await client.aclose()
        return replies, id(connection)

    replies, _ = asyncio.run(go())
    assert sorted(replies) == list(range(1, 301))
    assert replies == sorted(replies)  # sent in order, answered in order


@NEEDS_REDIS
def test_it_reads_and_writes_the_database_its_location_names():
    name = key()
    url = REDIS_URL.rsplit("/", 1)[0] + "/7"

    async def go() -> bytes | None:
        client = PipelinedRedis(url)
        await client.set(name, b"seven", px=30_000)
        value = await client.get(name)
        await client.aclose()
        return value

    assert asyncio.run(go()) == b"seven"
    assert redis.Redis.from_url(url).get(name) == b"seven"
    assert redis.Redis.from_url(url).delete(name) == 1


@NEEDS_REDIS
def test_it_raises_a_reply_error_and_keeps_the_connection_usable():
    name = key()

    async def go() -> bytes | None:
        client = PipelinedRedis(REDIS_URL)
        await client.set(name, b"text", px=30_000)
        with pytest.raises(ResponseError):
            await client.execute("INCR", name)  # not an integer
        value = await client.get(name)
        await client.delete(name)
        await client.aclose()
        return value

    assert asyncio.run(go()) == b"text"


@NEEDS_REDIS
def test_it_loads_a_script_the_server_has_forgotten():
    async def go() -> list[int]:
        client = PipelinedRedis(REDIS_URL)
        script = client.register_script("return tonumber(ARGV[1]) + 1")
        first = await script(keys=[], args=[1])
        await client.execute("SCRIPT", "FLUSH")
        second = await script(keys=[], args=[41])  # NOSCRIPT, then EVAL
        await client.aclose()
        return [first, second]

    assert asyncio.run(go()) == [2, 42]


@NEEDS_REDIS
def test_it_drops_the_reply_of_a_cancelled_command_and_gives_the_next_its_own():
    name = key()

    async def go() -> tuple[bytes | None, int]:
        client = PipelinedRedis(REDIS_URL)
        await client.set(name, b"mine", px=30_000)
        slow = asyncio.ensure_future(client.execute("INCR", name + ":n"))
        await asyncio.sleep(0)  # written, not yet answered
        slow.cancel()
        value = await client.get(name)
        count = await client.execute("INCR", name + ":n")
        await client.delete(name, name + ":n")
        await client.aclose()
        return value, count

    # the cancelled INCR still ran on the server: the next one reads 2
    assert asyncio.run(go()) == (b"mine", 2)


@NEEDS_REDIS
def test_it_opens_a_new_connection_after_the_server_closes_an_idle_one():
    async def go() -> tuple[int, int, bytes | None]:
        client = PipelinedRedis(REDIS_URL)
        first = await client.execute("CLIENT", "ID")
        # another client has the server close this connection while it is idle
        await asyncio.to_thread(redis.Redis.from_url(REDIS_URL).client_kill_filter, _id=first)
        await asyncio.sleep(0.2)  # the hang-up reaches this loop
        value = await client.execute("PING")
        second = await client.execute("CLIENT", "ID")
        await client.aclose()
        return first, second, value

    first, second, value = asyncio.run(go())
    assert value == b"PONG"
    assert second != first


def silent_server() -> tuple[socket.socket, int]:
    """A server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    return listener, listener.getsockname()[1]


def test_it_fails_every_waiting_command_when_a_reply_is_late():
    listener, port = silent_server()

    async def go() -> list[BaseException | None]:
        client = PipelinedRedis(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2)
        results = await asyncio.gather(
            client.execute("GET", "a"), client.execute("GET", "b"), return_exceptions=True
        )
        assert client._protocol is not None and client._protocol.lost is not None
        return [r if isinstance(r, BaseException) else None for r in results]

    try:
        errors = asyncio.run(asyncio.wait_for(go(), 10))
    finally:
        listener.close()
    assert all(isinstance(e, RedisTimeoutError) for e in errors), errors


def test_it_raises_a_connection_error_when_nothing_listens():
    listener, port = silent_server()
    listener.close()  # the port is now closed: connections are refused

    async def go() -> None:
        client = PipelinedRedis(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=2)
        await client.execute("PING")

    with pytest.raises(RedisConnectionError):
        asyncio.run(go())


def test_it_fails_the_commands_of_a_connection_the_server_hangs_up():
    async def go() -> BaseException:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)  # a command arrived: close without answering
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = PipelinedRedis(f"redis://127.0.0.1:{port}/0", socket_timeout=5)
        try:
            await client.execute("PING")
        except RedisConnectionError as exc:
            return exc
        finally:
            server.close()
        raise AssertionError("the command did not fail")

    error = asyncio.run(asyncio.wait_for(go(), 10))
    assert "connection lost" in str(error)


def test_it_fails_at_once_a_command_sent_on_a_connection_already_lost():
    async def go() -> BaseException | None:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = PipelinedRedis(f"redis://127.0.0.1:{port}/0")  # no socket timeout
        try:
            protocol = await client._connection()
            for _ in range(500):  # until the hang-up reaches the loop
                if protocol.lost is not None:
                    break
                await asyncio.sleep(0.01)
            future = client._send(protocol, ["PING"])
            return future.exception() if future.done() else None
        finally:
            server.close()

    error = asyncio.run(asyncio.wait_for(go(), 10))
    assert isinstance(error, RedisConnectionError), error
