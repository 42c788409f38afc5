"""Real processes for fault tests: an aipk server (``manage.py serve``, the production
command, one worker; or daphne, the development server's, when a test asks), a
private redis-server, a cuttable TCP proxy in front of PostgreSQL, and a database both
this process and those children reach.

Faults are injected into real infrastructure, never mocked: a redis-server the test
started itself is killed or SIGSTOP-paused; PostgreSQL (shared with other users of
this machine, so never stopped) is made unreachable by cutting the proxy the server
talks through. Setup and queries run in short-lived ``python -c`` children with the
same settings, so one code path serves SQLite (a migrated file) and PostgreSQL (the
test database pytest-django created).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from django.db import connection

PROJECT = Path(__file__).resolve().parents[2]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"nothing listens on 127.0.0.1:{port} after {timeout} s"
                ) from None
            time.sleep(0.05)


def child_env(**overrides: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["DJANGO_SETTINGS_MODULE"] = "aipk_site.settings"
    env["PYTHONUNBUFFERED"] = "1"
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


# -- redis-server ----------------------------------------------------------------------


class RedisServer:
    """A private redis-server on a free port: nothing else uses it, so killing or
    pausing it hurts only the test that started it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, 10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.resume()
            self.process.kill()
            self.process.wait(10)


@pytest.fixture(name="redis_server")
def redis_server_fixture() -> Iterator[RedisServer]:
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("needs /usr/bin/redis-server")
    server = RedisServer()
    yield server
    server.stop()


# -- a TCP proxy that can be cut -------------------------------------------------------


class TcpProxy:
    """127.0.0.1:<port> → target. ``cut()`` closes the listener and every open
    connection (new ones are refused, as if the server were down); ``restore()``
    listens on the same port again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._sockets.update((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._sockets.discard(a)
                self._sockets.discard(b)


# -- a database shared with child processes --------------------------------------------


@dataclass
class SharedDatabase:
    url: str
    vendor: str

    def run(self, code: str, *args: str, database_url: str | None = None) -> str:
        """Run ``code`` in a fresh Django child; its stdout."""
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=PROJECT,
            env=child_env(DATABASE_URL=database_url or self.url, REDIS_URL=None),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def usage_rows(self, tenant_slug: str) -> list[dict]:
        return json.loads(self.run(QUERY_USAGE, tenant_slug))


@pytest.fixture(scope="module", name="sqlite_file_url")
def sqlite_file_url_fixture(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('faults') / 'db.sqlite3'}"
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=PROJECT,
        env=child_env(DATABASE_URL=url, REDIS_URL=None),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stderr
    return url


@pytest.fixture(name="shared_database")
def shared_database_fixture(request, transactional_db) -> SharedDatabase:
    # transactional_db: rows the children commit are visible here and flushed after the
    # test (requested by name: getfixturevalue() left the test database unset up)
    if connection.vendor == "postgresql":
        s = connection.settings_dict
        url = (
            f"postgres://{quote(s['USER'] or '', safe='')}:{quote(s['PASSWORD'] or '', safe='')}"
            f"@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
        )
        return SharedDatabase(url, "postgresql")
    return SharedDatabase(request.getfixturevalue("sqlite_file_url"), "sqlite")


SETUP_WORLD = textwrap.dedent(
    """
    import json, sys
    import django
    django.setup()
    from providers_app.services.credentials import api_key_add
    from providers_app.services.providers import provider_create
    from tenants_app.models import Tenant, VirtualKey
    from tenants_app.services.secrets import VIRTUAL_KEY_PREFIX, new_secret

    slug, simulator_url = sys.argv[1], sys.argv[2]
    provider = provider_create(
        name=f"sim-{slug}"[:60], type="openai", base_url=simulator_url + "/openai/v1",
        default_model="gpt-4o-mini",
    )
    api_key_add(provider=provider, label="key 1", secret="sk-sim-faults-key-0001")
    tenant = Tenant.objects.create(name=slug, slug=slug)
    secret, key_hash, prefix = new_secret(VIRTUAL_KEY_PREFIX)
    VirtualKey.objects.create(tenant=tenant, name="k", prefix=prefix, key_hash=key_hash)
    print(json.dumps({"secret": secret, "provider": provider.name}))
    """
)

QUERY_USAGE = textwrap.dedent(
    """
    import json, sys
    import django
    django.setup()
    from tenants_app.models import UsageRecord
    rows = UsageRecord.objects.filter(tenant__slug=sys.argv[1]).values(
        "request_id", "status", "error_type", "prompt_tokens", "completion_tokens", "streamed"
    )
    print(json.dumps(list(rows)))
    """
)


@dataclass
class World:
    """A tenant with a key and an OpenAI-type provider on the simulator."""

    slug: str
    secret: str
    provider: str

    def model(self, model_id: str) -> str:
        return f"{self.provider}/{model_id}"


def make_world(database: SharedDatabase, slug: str, simulator_url: str) -> World:
    created = json.loads(database.run(SETUP_WORLD, slug, simulator_url))
    return World(slug=slug, secret=created["secret"], provider=created["provider"])


# -- an aipk server process ------------------------------------------------------------


@dataclass
class AipkServer:
    """An aipk server in a child process: ``manage.py serve`` unless ``command`` says."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    # "serve": the production command (uvicorn), one worker, so the child is the server
    # itself (a SIGKILL or SIGTERM reaches it, not a supervisor); "daphne": the ASGI
    # server of the development server, started directly; "run_embedded": `make run`'s
    # server (daphne, no reloader)
    command: str = "serve"
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_path: Path) -> AipkServer:
        self.log_path = log_path
        log = open(log_path, "ab")  # noqa: SIM115 -- the child owns it until it exits
        env = self.env
        if self.command == "run_embedded":
            argv = ["manage.py", "run_embedded", "--noreload", f"127.0.0.1:{self.port}"]
        elif self.command == "daphne":
            argv = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port)]
            argv.append("aipk_site.asgi:application")
        else:
            argv = ["manage.py", "serve"]
            port = str(self.port)
            env = {**env, "WEB_CONCURRENCY": "1", "HOST": "127.0.0.1", "PORT": port}
        self.process = subprocess.Popen(
            [sys.executable, *argv],
            cwd=PROJECT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the aipk server exited at start:\n{self.logs()}")
            try:
                # any answer: /health is a 500 while the database is down, by design
                httpx.get(self.url + "/health", timeout=2)
                return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the aipk server did not answer in 60 s:\n{self.logs()}")
            time.sleep(0.1)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def server_env(database_url: str, redis_url: str | None, **settings: str) -> dict[str, str]:
    return child_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        USAGE_FLUSH_INTERVAL_SECONDS="0.2",
        LOG_LEVEL="INFO",
        **settings,
    )


@pytest.fixture(name="aipk_servers")
def aipk_servers_fixture(tmp_path) -> Iterator[list[AipkServer]]:
    """Servers a test starts; killed at its end if still running."""
    servers: list[AipkServer] = []
    yield servers
    for server in servers:
        server.stop()


def chat_body(model: str, *, stream: bool = True, text: str = "hello there") -> dict:
    body: dict = {"model": model, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body
