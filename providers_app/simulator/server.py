"""Running the simulator: in the foreground (CLI) or in a background thread (tests, demos).

``handler_cancellation`` is on so a request the client abandons (``hang``, a
cancelled stream) stops costing anything, and the short shutdown timeout lets
a server with hanging requests stop promptly.
"""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from providers_app.simulator.app import create_app
from providers_app.simulator.context import REQUEST_LOG

SHUTDOWN_TIMEOUT_S = 0.5

# Provider name -> path appended to the server URL to get the SDK base URL.
BASE_PATHS = {
    "openai": "/openai/v1",
    "anthropic": "/anthropic",
    "gemini": "/gemini",
    "cerebras": "/cerebras/v1",
    "qwen": "/qwen/v1",
    "openrouter": "/openrouter/api/v1",
}


def run(host: str = "127.0.0.1", port: int = 8100, delay_ms: float = 0) -> None:
    """Serve in the foreground until interrupted."""
    print(f"aipk provider simulator on http://{host}:{port} (delay {delay_ms:g} ms per chunk)")
    web.run_app(
        create_app(delay_ms),
        host=host,
        port=port,
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        access_log=None,
        print=None,
    )


class RunningSimulator:
    """A simulator serving from its own thread and event loop.

    ``url`` is the server root (``http://127.0.0.1:<port>``); ``base_url(name)``
    the base URL to give a provider SDK or adapter.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        thread: threading.Thread,
        runner: web.AppRunner,
        host: str,
        port: int,
    ) -> None:
        self._loop = loop
        self._thread = thread
        self._runner = runner
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"

    def base_url(self, provider: str) -> str:
        return self.url + BASE_PATHS[provider]

    def requests(self) -> list[dict]:
        """Like ``GET /_sim/requests``: last <= 100 requests, oldest first, secrets masked."""
        return self._call(self._runner.app[REQUEST_LOG].snapshot)

    def clear_requests(self) -> None:
        self._call(self._runner.app[REQUEST_LOG].clear)

    def stop(self) -> None:
        if not self._loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def _call(self, fn):
        async def call():
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout=10)


def start_in_thread(
    host: str = "127.0.0.1", port: int = 0, delay_ms: float = 0
) -> RunningSimulator:
    """Start a simulator on a background thread; ``port=0`` picks a free port."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(
        create_app(delay_ms),
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        access_log=None,
    )

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    thread = threading.Thread(target=serve, name="provider-simulator", daemon=True)
    thread.start()

    async def start() -> int:
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        return runner.addresses[0][1]

    bound_port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    return RunningSimulator(loop, thread, runner, host, bound_port)
