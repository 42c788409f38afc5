"""Shared fixtures for the whole suite.

``simulator`` -- the provider simulator (providers_app.simulator), started once
per test session on 127.0.0.1 with an ephemeral port and no delay, in a
background thread with its own event loop. Stable API:

- ``simulator.url``: server root, e.g. ``"http://127.0.0.1:54321"``.
- ``simulator.base_url(name)``: SDK / adapter base URL for ``"openai"``
  (``url + "/openai/v1"``), ``"anthropic"`` (``url + "/anthropic"``),
  ``"gemini"`` (``url + "/gemini"``), ``"cerebras"`` (``url + "/cerebras/v1"``),
  ``"qwen"`` (``url + "/qwen/v1"``), ``"openrouter"`` (``url + "/openrouter/api/v1"``).
- ``simulator.requests()``: the last <= 100 requests received, oldest first,
  as dicts ``{"method", "path", "query", "headers", "body"}`` with lower-case
  header names and every credential masked to its last 4 characters
  (``"Bearer ...1234"``) -- same as ``GET /_sim/requests``.
- ``simulator.clear_requests()``: empty that log (``DELETE /_sim/requests``).
  The server is shared by the session: clear before asserting on requests.
- ``simulator.host``, ``simulator.port``.

``gateway_server`` -- a real aipk server: daphne (the production ASGI server)
in a background thread of the test process for the whole session, so the server
and the test share the test database and the cache. Tests that call it use
``transactional_db`` (the server's connection must see committed rows).
Twisted's reactor cannot be restarted, hence one server per session.

Failures, delays and replies are chosen per request (``x-sim-fail``,
``x-sim-delay-ms``, model ids containing ``fail-<mode>``): docs/SIMULATOR.md.
"""

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from providers_app.simulator import RunningSimulator, start_in_thread


@pytest.fixture(scope="session")
def simulator() -> Iterator[RunningSimulator]:
    running = start_in_thread(host="127.0.0.1", port=0, delay_ms=0)
    yield running
    running.stop()


@dataclass(frozen=True)
class RunningGateway:
    url: str  # e.g. http://127.0.0.1:54321

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"


@pytest.fixture(scope="session")
def gateway_server(django_db_setup, django_db_blocker) -> Iterator[RunningGateway]:
    from twisted.internet import reactor

    from aipk_site.asgi import application

    # the project's daphne: its websocket message limit and close frame
    from aipk_site.daphne_server import DaphneServer as Server

    server = Server(
        application=application,
        endpoints=["tcp:port=0:interface=127.0.0.1"],
        signal_handlers=False,
        verbosity=0,
    )
    thread = threading.Thread(target=server.run, name="daphne", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.listening_addresses:
        if time.monotonic() > deadline:
            raise RuntimeError("daphne did not start listening within 20 s")
        time.sleep(0.02)
    host, port = server.listening_addresses[0]
    yield RunningGateway(url=f"http://{host}:{port}")
    reactor.callFromThread(reactor.stop)
    thread.join(timeout=10)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    """Before any fixture is torn down (pytest-django empties the database then), let a
    background reload of the metric labels finish: a read still running in that thread
    locks SQLite's tables ("database table is locked") or deadlocks PostgreSQL's flush."""
    from aipk_site.infra.metrics import metric_labels_wait

    metric_labels_wait()
    if item.path.parent.name == "e2e" and "gateway_server" in item.fixturenames:
        _let_the_server_account(item)
    yield


def _let_the_server_account(item) -> None:
    """A browser test ends when the page shows the answer; the server accounts the
    request a moment later (the ledger's close, then the usage writer's thread, the body
    and response writers). Write all of it now, before pytest-django empties the tables
    under a writer (SQLite: "database table is locked"). A short quiet spell, not a
    fixed wait: nothing pending three looks in a row."""
    from aipk_site.gateway.request_bodies import request_bodies_flush
    from aipk_site.gateway.response_store import responses_flush
    from aipk_site.gateway.usage import usage_flush, usage_pending

    deadline = time.monotonic() + 3
    quiet = 0
    while quiet < 3 and time.monotonic() < deadline:
        written = usage_flush() + request_bodies_flush() + responses_flush()
        quiet = quiet + 1 if not written and not usage_pending() else 0
        time.sleep(0.02)
