"""The change bus: this process's subscribers at once, every other process's through
Redis pub/sub (a private redis-server per test), a reset whenever events may have been
missed, and never a failed write because Redis is away."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.db import transaction

from aipk_site.infra import change_events
from tests.gateway.processes import (
    PROJECT,
    child_env,
    free_port,
    redis_server_fixture,  # noqa: F401 -- fixture
)

# how long an event may take to arrive before the test gives up (a loaded machine)
BOUND = 15.0


class Recorder:
    """A subscriber that remembers what it was called with (None: a reset)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any] | None] = []
        self._changed = threading.Condition()

    def __call__(self, payload: Any) -> None:
        with self._changed:
            self.calls.append(None if payload is None else dict(payload))
            self._changed.notify_all()

    def wait_for(self, expected: dict[str, Any] | None) -> None:
        with self._changed:
            arrived = self._changed.wait_for(lambda: expected in self.calls, timeout=BOUND)
        assert arrived, f"{expected!r} never arrived; got {self.calls!r}"


@pytest.fixture
def topic() -> Iterator[tuple[str, Recorder]]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    recorder = Recorder()
    change_events.stop_listening()
    change_events.subscribe(name, recorder)
    yield name, recorder
    change_events.unsubscribe(name, recorder)
    change_events.stop_listening()
    # the session's own Redis (REDIS_URL), if any: listening again now, so the reset of a
    # new subscription cannot land in the middle of a later test
    change_events.ensure_listening()


@pytest.fixture
def on_redis(redis_server, settings):  # noqa: F811 -- the fixture imported above
    settings.REDIS_URL = redis_server.url
    return redis_server


def listening() -> Any:
    listener = change_events.ensure_listening()
    assert listener is not None
    assert listener.subscribed.wait(BOUND), "the listener never subscribed"
    return listener


def foreign(topic: str, payload: dict[str, Any]) -> str:
    """A message as another process sends it."""
    return json.dumps({"origin": "another-process", "topic": topic, "payload": payload})


def test_it_runs_this_process_subscribers_at_once_without_redis(topic, settings):
    name, recorder = topic
    settings.REDIS_URL = ""

    change_events.publish(name, {"tenant_id": 7})

    assert recorder.calls == [{"tenant_id": 7}]
    assert change_events.ensure_listening() is None  # nothing to listen to


def test_it_names_the_channel_after_the_cache_prefix_and_the_redis_db(settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/5"
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": "aipk"}}
    # pub/sub ignores db numbers: two deployments on one server must not hear each other
    assert change_events.channel_name() == "aipk:changes:5"


PUBLISH = textwrap.dedent(
    """
    import json, sys
    import django
    django.setup()
    from aipk_site.infra import change_events
    change_events.publish(sys.argv[1], json.loads(sys.argv[2]))
    """
)


def test_it_delivers_an_event_published_by_another_process(topic, on_redis):
    name, recorder = topic
    listening()

    done = subprocess.run(
        [sys.executable, "-c", PUBLISH, name, json.dumps({"key_hashes": ["abc"]})],
        cwd=PROJECT,
        env=child_env(REDIS_URL=on_redis.url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    recorder.wait_for({"key_hashes": ["abc"]})


def test_it_applies_an_event_it_published_itself_once(topic, on_redis):
    name, recorder = topic
    listening()
    recorder.calls.clear()

    change_events.publish(name, {"n": 1})
    # sent after ours on the same channel: once it has arrived, ours has too
    with redis.Redis.from_url(on_redis.url) as client:
        client.publish(change_events.channel_name(), foreign(name, {"n": 2}))
    recorder.wait_for({"n": 2})

    assert recorder.calls == [{"n": 1}, {"n": 2}]


def test_it_resets_every_subscriber_when_redis_drops_the_connection(topic, on_redis):
    name, recorder = topic
    listener = listening()
    recorder.calls.clear()

    with redis.Redis.from_url(on_redis.url) as client:
        assert client.client_kill_filter(_type="pubsub") >= 1

        # events sent while it was away are lost: it drops everything, then listens again
        recorder.wait_for(None)
        assert listener.subscribed.wait(BOUND)
        client.publish(change_events.channel_name(), foreign(name, {"after": "reconnect"}))
    recorder.wait_for({"after": "reconnect"})


def test_it_sends_to_other_processes_only_once_the_transaction_commits(
    topic, on_redis, transactional_db
):
    name, recorder = topic
    with redis.Redis.from_url(on_redis.url) as client, client.pubsub() as other_process:
        other_process.subscribe(change_events.channel_name())
        assert other_process.get_message(timeout=BOUND)["type"] == "subscribe"

        with transaction.atomic():
            change_events.publish(name, {"tenant_id": 3})
            assert recorder.calls == [{"tenant_id": 3}]  # this process: at once
            # a marker sent now arrives first: nothing left for the others before the commit
            client.publish(change_events.channel_name(), "marker")
            assert other_process.get_message(timeout=BOUND)["data"] == b"marker"

        sent = other_process.get_message(timeout=BOUND)
        assert sent is not None and sent["type"] == "message"
        assert json.loads(sent["data"])["payload"] == {"tenant_id": 3}
    # and once more here on commit: a read between the write and the commit is dropped
    assert recorder.calls == [{"tenant_id": 3}, {"tenant_id": 3}]


def test_it_does_not_fail_a_write_when_redis_is_down(topic, settings, caplog):
    name, recorder = topic
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    with caplog.at_level(logging.WARNING, logger="aipk_site.infra.change_events"):
        change_events.publish(name, {"key_hashes": ["a-key-hash-0123"]})

    assert recorder.calls == [{"key_hashes": ["a-key-hash-0123"]}]
    assert "not published" in caplog.text
    assert "a-key-hash-0123" not in caplog.text  # payloads are never logged


FORK = textwrap.dedent(
    """
    import os, sys
    import django
    django.setup()
    from aipk_site.infra import change_events

    resets = []
    change_events.subscribe("t", lambda payload: resets.append(payload))
    parent = change_events.ensure_listening()
    assert parent.subscribed.wait(15), "parent never subscribed"
    resets.clear()
    pid = os.fork()
    if pid == 0:
        # the child: no listener of the parent's, snapshots dropped, its own listener
        ok = change_events.listener() is None and resets == [None]
        child = change_events.ensure_listening()
        ok = ok and child is not parent and child.subscribed.wait(15)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


def test_it_gives_a_forked_worker_its_own_listener(on_redis):
    done = subprocess.run(
        [sys.executable, "-c", FORK],
        cwd=PROJECT,
        env=child_env(REDIS_URL=on_redis.url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
