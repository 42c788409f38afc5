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

Failures, delays and replies are chosen per request (``x-sim-fail``,
``x-sim-delay-ms``, model ids containing ``fail-<mode>``): docs/SIMULATOR.md.
"""

from collections.abc import Iterator

import pytest

from providers_app.simulator import RunningSimulator, start_in_thread


@pytest.fixture(scope="session")
def simulator() -> Iterator[RunningSimulator]:
    running = start_in_thread(host="127.0.0.1", port=0, delay_ms=0)
    yield running
    running.stop()
