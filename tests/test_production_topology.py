"""The production topology on this machine, started as docs/DEPLOY.md says, driven end to end.

Real child processes, each in its own process group, from the commands in DEPLOY.md's
``<!-- topology-commands -->`` block (read here, not copied): ``manage.py migrate``,
``manage.py serve`` with two uvicorn workers, a Celery worker and Celery beat, on the
PostgreSQL test database pytest-django created and a Redis database, with the provider
simulator (``manage.py simulate_providers``) as the upstream and the OAuth server.

Runs only on PostgreSQL + Redis (CI's PostgreSQL+Redis stage):
DATABASE_URL=postgres://... REDIS_URL=redis://.../2 pytest tests/test_production_topology.py
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import httpx
import psutil
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from providers_app.models import HealthCheck, OAuthCredential
from providers_app.services.credentials import api_key_add
from providers_app.services.oauth.code_flow import oauth_callback, oauth_start
from providers_app.services.providers import provider_create
from tenants_app.models import Invoice, UsageRecord
from tenants_app.services.keys import virtual_key_create
from tenants_app.services.tenants import tenant_create
from tests.deploy_commands import topology_commands
from tests.gateway.processes import (
    PROJECT,
    SharedDatabase,
    child_env,
    free_port,
    shared_database_fixture,  # noqa: F401 -- fixture
    wait_for_port,
)

REDIS_URL = os.environ.get("REDIS_URL", "")
pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres") or not REDIS_URL,
    reason="the production topology needs PostgreSQL and Redis (DATABASE_URL and REDIS_URL)",
)

TIMEOUT = 60
# The test stands where DEPLOY.md's TLS-terminating proxy stands: on 127.0.0.1 (the
# FORWARDED_ALLOW_IPS below), saying the client came over https from its own address.
AS_THE_TLS_PROXY = {"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.7"}
BIN = Path(sys.executable).parent


# -- processes ----------------------------------------------------------------------------


@dataclass
class Started:
    name: str
    process: subprocess.Popen
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Topology:
    """The processes a test started; each leads its own process group, so stopping one
    stops its children too (uvicorn's workers, Celery's pool)."""

    log_dir: Path
    env: dict[str, str]
    started: list[Started] = field(default_factory=list)

    def start(self, name: str, argv: list[str], **env: str) -> Started:
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                argv,
                cwd=PROJECT,
                env={**self.env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = Started(name, process, log_path)
        self.started.append(started)
        return started

    def run(self, name: str, argv: list[str], **env: str) -> str:
        done = subprocess.run(
            argv,
            cwd=PROJECT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        return done.stdout

    def logs(self) -> str:
        return "\n".join(f"--- {s.name} ---\n{s.logs()[-4000:]}" for s in self.started)

    def stop_all(self) -> None:
        for started in reversed(self.started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(started.process.pid, signal.SIGTERM)
        for started in reversed(self.started):
            try:
                started.process.wait(20)
            except subprocess.TimeoutExpired:
                pass
            # a pool child or uvicorn worker left behind in the group goes too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(started.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                started.process.wait(10)


@pytest.fixture(name="topology")
def topology_fixture(tmp_path, shared_database: SharedDatabase) -> Iterator[Topology]:
    assert shared_database.vendor == "postgresql"
    # the Redis database is left as it is (other tests may share it): a task an earlier,
    # killed run left queued is harmless here, as every check below names its own rows
    # or task id
    env = child_env(
        DATABASE_URL=shared_database.url,
        REDIS_URL=REDIS_URL,
        CELERY_BROKER_URL=None,
        DEBUG="false",
        DJANGO_SECRET_KEY="topology-test-secret-key-not-a-real-one",
        # the keys this process encrypts the seeded credentials with
        FERNET_KEYS=",".join(settings.FERNET_KEYS),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        # behind a TLS-terminating proxy, as docs/DEPLOY.md says (DEBUG off redirects
        # plain http to https otherwise)
        SECURE_PROXY_SSL_HEADER="true",
        FORWARDED_ALLOW_IPS="127.0.0.1",
        LOG_LEVEL="INFO",
        # rows reach the database quickly: the test waits for them
        USAGE_FLUSH_INTERVAL_SECONDS="0.2",
    )
    topology = Topology(tmp_path, env)
    yield topology
    topology.stop_all()


def wait_until(what: str, check, topology: Topology, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        for started in topology.started:
            assert started.alive(), f"{started.name} exited:\n{topology.logs()}"
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s\n{topology.logs()}")
        time.sleep(0.25)


# -- what the test does over the network ----------------------------------------------------


@dataclass
class Answer:
    request_id: str
    worker_pid: int
    status: int
    body: bytes


def chat_on_a_new_connection(
    port: int, secret: str, model: str, text: str, stream: bool, server: psutil.Process
) -> Answer:
    """One /v1 chat completion on its own connection, and the worker process that holds the
    server side of that connection: found from the outside (the process table), so the
    server adds nothing to its answers for the test."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.connect()
        client_port = connection.sock.getsockname()[1]
        body: dict[str, object] = {
            "model": model,
            "messages": [{"role": "user", "content": text}],
        }
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        connection.request(
            "POST",
            "/v1/chat/completions",
            body=json.dumps(body),
            headers={
                "authorization": f"Bearer {secret}",
                "content-type": "application/json",
                **AS_THE_TLS_PROXY,
            },
        )
        response = connection.getresponse()
        payload = response.read()
        # the connection is kept alive: the worker that answered still holds it
        pid = worker_holding(server, port, client_port)
        return Answer(response.getheader("x-request-id") or "", pid, response.status, payload)
    finally:
        connection.close()


def web_workers(server: psutil.Process) -> list[psutil.Process]:
    """uvicorn's worker processes (multiprocessing spawns them; its resource tracker is
    another child, serving nothing)."""
    return [c for c in server.children() if "multiprocessing.spawn" in " ".join(c.cmdline())]


def worker_holding(server: psutil.Process, port: int, client_port: int) -> int:
    for worker in web_workers(server):
        for conn in worker.net_connections(kind="tcp"):
            if (
                conn.laddr
                and conn.laddr.port == port
                and conn.raddr
                and conn.raddr.port == (client_port)
            ):
                return worker.pid
    raise AssertionError(f"no worker of {server.pid} holds the connection from :{client_port}")


async def websocket_turn(port: int, secret: str, model: str) -> list[dict]:
    request = {
        "type": "chat.request",
        "id": "topology-1",
        "model": model,
        "messages": [{"role": "user", "content": "Hello over the socket"}],
    }
    events: list[dict] = []
    async with aiohttp.ClientSession() as session:
        headers = {"authorization": f"Bearer {secret}", **AS_THE_TLS_PROXY}
        async with session.ws_connect(f"ws://127.0.0.1:{port}/ws/chat/", headers=headers) as ws:
            await ws.send_json(request)
            while not events or events[-1]["type"] not in ("chat.done", "chat.error"):
                message = await ws.receive(timeout=TIMEOUT)
                assert message.type == aiohttp.WSMsgType.TEXT, (message.type, message.data)
                events.append(json.loads(message.data))
    return events


def connect_oauth_account(simulator_url: str, name: str) -> OAuthCredential:
    """An OAuth credential through the real flow against the simulator's OAuth server,
    with an access token that expires in a second (so the simulator knows its refresh
    token, and the refresh task finds it due)."""
    provider = provider_create(
        name=name,
        type="openai",
        base_url=simulator_url + "/openai/v1",
        oauth_client_id=f"sim-{name}",
        oauth_authorize_url=simulator_url + "/oauth/authorize?expires_in=1",
        oauth_token_url=simulator_url + "/oauth/token",
    )
    url = oauth_start(provider=provider, redirect_uri=f"http://127.0.0.1/oauth/callback/{name}/")
    location = httpx.get(url, follow_redirects=False).headers["location"]
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    result = async_to_sync(oauth_callback)(provider_name=name, params=params)
    assert result.credential is not None, result
    return OAuthCredential.objects.get(pk=result.credential.pk)


# -- the test -------------------------------------------------------------------------------


def test_it_runs_the_documented_topology_end_to_end(topology: Topology):
    commands = topology_commands()
    assert set(commands) == {"migrate", "serve", "worker", "beat"}
    assert commands["serve"].env.get("WEB_CONCURRENCY") == "2"

    # the upstream providers and their OAuth server
    simulator_port = free_port()
    topology.start(
        "simulator",
        [sys.executable, "manage.py", "simulate_providers", "--port", str(simulator_port)],
    )
    wait_for_port(simulator_port)
    simulator_url = f"http://127.0.0.1:{simulator_port}"

    # 1. migrations first, run to completion (pytest-django migrated this database: a no-op
    # that must still succeed against it, as on every upgrade)
    migrate = commands["migrate"]
    topology.run("migrate", migrate.executable_argv(), **migrate.env)

    # the schedule holds only what this test makes due (the migrations' rows are switched off)
    PeriodicTask.objects.update(enabled=False)

    # seed through the services: a provider on the simulator, a tenant and its key
    provider = provider_create(
        name="topology-sim",
        type="openai",
        base_url=simulator_url + "/openai/v1",
        default_model="gpt-4o-mini",
    )
    api_key_add(provider=provider, label="key 1", secret="sk-sim-topology-key-0001")
    tenant = tenant_create(name="Topology", slug="topology", actor=None)
    _, secret = virtual_key_create(tenant=tenant, name="topology", actor=None)
    model = "topology-sim/gpt-4o-mini"

    # 2. the long-running processes, exactly as DEPLOY.md lists them
    web_port = free_port()
    serve = commands["serve"]
    web = topology.start(
        "web", serve.executable_argv(), **serve.env, HOST="127.0.0.1", PORT=str(web_port)
    )
    for role in ("worker", "beat"):
        topology.start(role, commands[role].executable_argv(), **commands[role].env)

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{web_port}/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until("/ready answers 200", ready, topology, timeout=120)
    server = psutil.Process(web.process.pid)
    wait_until("two uvicorn workers", lambda: len(web_workers(server)) == 2, topology)

    # 3. /v1 requests until both workers have answered some (connections are spread by
    # the kernel; concurrent ones keep both workers' accept loops busy)
    answers: list[Answer] = []
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        while len({a.worker_pid for a in answers}) < 2 and len(answers) < 64:
            batch = [
                pool.submit(
                    chat_on_a_new_connection,
                    web_port,
                    secret,
                    model,
                    f"request {len(answers) + n}",
                    n % 2 == 1,
                    server,
                )
                for n in range(8)
            ]
            answers += [future.result() for future in batch]
    assert all(a.status == 200 for a in answers), [(a.status, a.body[:200]) for a in answers]
    worker_pids = {worker.pid for worker in web_workers(server)}
    assert {a.worker_pid for a in answers} == worker_pids, "both web workers answered"
    assert b"Simulated reply to: request 0" in answers[0].body
    request_ids = {a.request_id for a in answers}
    assert len(request_ids) == len(answers) and "" not in request_ids

    # 4. a websocket chat turn on the same server
    events = asyncio.run(websocket_turn(web_port, secret, model))
    assert [e["type"] for e in events[-2:]] == ["chat.usage", "chat.done"], events
    assert "".join(e.get("text", "") for e in events[:-2]) == (
        "Simulated reply to: Hello over the socket"
    )

    # 5. one usage row per request, written by the workers
    expected = len(answers) + 1
    rows = UsageRecord.objects.filter(tenant=tenant)
    wait_until(f"{expected} usage rows", lambda: rows.count() >= expected, topology)
    time.sleep(0.5)  # a duplicate row would arrive with the last ones
    assert rows.count() == expected
    assert request_ids <= set(rows.values_list("request_id", flat=True))
    assert set(rows.values_list("status", flat=True)) == {"success"}
    assert sum(r.completion_tokens for r in rows) > 0

    # 6. beat sends scheduled jobs, the worker runs them: invoices and health checks,
    # due now, once (one_off); beat rereads the schedule when it changes
    started_at = timezone.now()
    every_second, _ = IntervalSchedule.objects.get_or_create(
        every=1, period=IntervalSchedule.SECONDS
    )
    for task in ("tenants.generate_invoices", "providers.run_health_checks"):
        PeriodicTask.objects.create(
            name=f"topology: {task}",
            task=task,
            interval=every_second,
            one_off=True,
            start_time=started_at - dt.timedelta(minutes=1),
        )

    def invoice() -> Invoice | None:
        month = timezone.now().date().replace(day=1)
        return Invoice.objects.filter(tenant=tenant, period=month).first()

    this_month = wait_until("the invoice job ran", invoice, topology)
    assert sum(line["requests"] for line in this_month.lines) == expected, this_month.lines
    checks = HealthCheck.objects.filter(provider=provider, checked_at__gte=started_at)
    wait_until("the health check job ran", checks.exists, topology)
    assert checks.filter(api_key__isnull=False, healthy=True).exists()
    logs = {s.name: s.logs() for s in topology.started}
    assert "tenants.generate_invoices" in logs["beat"]
    assert "providers.run_health_checks" in logs["beat"]
    wait_until(
        "the worker logs both jobs as succeeded",
        lambda: (
            len(
                re.findall(
                    r"Task (tenants\.generate_invoices|providers\.run_health_checks)"
                    r"\[[^]]+\] succeeded",
                    next(s for s in topology.started if s.name == "worker").logs(),
                )
            )
            >= 2
        ),
        topology,
    )

    # 7. a token refresh queued by hand (`celery call`), run by the worker against the
    # simulator's OAuth server, the new token stored encrypted
    credential = connect_oauth_account(simulator_url, "topology-oauth")
    assert credential.expires_at - timezone.now() < dt.timedelta(seconds=5)
    time.sleep(1.1)  # past its expiry, whatever the refresh buffer is
    queued = topology.run(
        "celery call",
        [str(BIN / "celery"), "-A", "aipk_site", "call", "providers.refresh_expiring_tokens"],
    )
    task_id = queued.strip().splitlines()[-1]
    from aipk_site.celery import app

    result = app.AsyncResult(task_id).get(timeout=TIMEOUT)
    assert result == {"refreshed": [credential.pk], "failed": []}
    fresh = OAuthCredential.objects.get(pk=credential.pk)
    assert fresh.access_token != credential.access_token
    assert fresh.refresh_count == 1
    assert fresh.expires_at - timezone.now() > dt.timedelta(minutes=30)
    refreshes = httpx.get(
        simulator_url + "/_sim/oauth/calls", params={"client_id": credential.client_id}
    ).json()
    assert refreshes.get("refresh_token") == 1

    # nothing secret reached any process's log
    for name, text in {s.name: s.logs() for s in topology.started}.items():
        assert "sk-sim-topology-key-0001" not in text, name
        assert secret not in text, name
        assert fresh.access_token not in text and credential.access_token not in text, name
