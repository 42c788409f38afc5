"""Retake the README's console screenshots: docs/images/console-dashboard.png and
docs/images/console-requests.png.

    .venv/bin/python scripts/readme_screenshot.py

Everything happens in a throwaway SQLite database in a temporary directory: migrate, the
provider simulator on a free port, ``manage.py seed_demo`` against it (as ``make run``
does), then three tenants with a day of generated traffic (a daily rhythm, a provider
incident, refusals, failovers, streamed replies, costs from the price table) so every
chart of the dashboard has a shape. Then the server (``manage.py run_embedded``, as
``make run``) on another free port, and Debian's chromium through Playwright, signed in
as the demo's admin: the dashboard over the last 24 hours with a tooltip on a bar of the
Requests chart, and the requests page with the drawer open on a failed request. Both at
1400x900, light theme, the viewport only.

The traffic comes from a fixed random seed, so two runs differ only by the clock. Every
process it started and the temporary directory are gone when it exits, failed or not.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
PYTHON = sys.executable
CHROMIUM = os.environ.get("AIPK_CHROMIUM", "/usr/bin/chromium")
# the same flags as the browser tests (tests/e2e/conftest.py): as root in a container,
# without a GPU, with no reason to phone home
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 900}

# tenant name, slug, its keys, how busy it is (share of the traffic)
TENANTS = [
    ("Acme Support", "acme-support", ["helpdesk-bot", "ticket-triage"], 0.5),
    ("Globex Research", "globex-research", ["notebook-agent", "paper-summaries"], 0.3),
    ("Initech Billing", "initech-billing", ["invoice-extractor"], 0.2),
]
# (alias, provider, model, endpoint, weight, median latency ms): the demo's routes and
# providers (seed_demo), with the models its price table knows
TARGETS = [
    ("cheap", "openai", "gpt-4o-mini", "chat.completions", 30, 900),
    ("smart", "openai", "gpt-4o", "chat.completions", 14, 2400),
    ("smart", "anthropic", "claude-sonnet-4-20250514", "messages", 16, 3200),
    ("balanced", "anthropic", "claude-haiku-4-5-20251001", "messages", 10, 1300),
    ("balanced", "gemini", "gemini-2.5-flash", "chat.completions", 12, 1100),
    ("fast", "cerebras", "llama3.1-8b", "chat.completions", 10, 350),
    ("fast", "groq", "llama-3.1-8b-instant", "chat.completions", 8, 420),
]
# where a failed attempt fails over to, as the demo's failover routes do
FAILOVER = {"openai": "anthropic", "anthropic": "openai", "cerebras": "groq", "groq": "cerebras"}
ERRORS = [  # (error_type, HTTP status), for a provider failing outside the incident
    ("rate_limit_error", 429),
    ("server_error", 500),
    ("timeout_error", None),
]
REFUSALS = ["tenant_rpm", "key_budget", "key_tpm"]
END_USERS = ["u-1042", "u-2210", "u-3307", "u-4471", "u-5093", "u-6128", "u-7345", "u-8802"]
# Anthropic is overloaded for 40 minutes, three hours ago: an error bump, failovers, a
# health dip
INCIDENT_AGO = (dt.timedelta(hours=3, minutes=40), dt.timedelta(hours=3))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f} s")


class Processes:
    """The processes this script started, each in its own process group so that its
    children (the server's worker threads are not processes, but daphne may fork) go
    with it."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("w")
        process = subprocess.Popen(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.running.append((name, process))
        return process

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def stop_all(self) -> None:
        for name, process in reversed(self.running):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    print(f"{name} ignored SIGTERM; killing it", file=sys.stderr)
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        self.running.clear()

    def log_tail(self, lines: int = 30) -> str:
        tails = []
        for log in sorted(self.logs.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            tails.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(tails)


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """A SIGTERM to this script unwinds through the ``finally`` blocks like Ctrl-C."""

    def leave(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def busyness(at: dt.datetime) -> float:
    """Requests per minute at a time of day (UTC): quiet at night, a peak at 14:00, a
    smaller one at 09:30."""
    hour = at.hour + at.minute / 60
    afternoon = math.exp(-(((hour - 14) / 3.2) ** 2))
    morning = 0.55 * math.exp(-(((hour - 9.5) / 1.6) ** 2))
    return 1.2 + 7.5 * (afternoon + morning)


def seed_traffic(password: str) -> dict[str, str]:
    """Three tenants with their keys and a day of usage rows; the admin's password set;
    returns the id of the failed request the drawer opens on."""
    import django

    django.setup()

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from providers_app.kit.types import Usage
    from providers_app.models import ApiKey, HealthCheck, Provider
    from tenants_app.models import UsageRecord, UsageStatus
    from tenants_app.services.keys import virtual_key_create
    from tenants_app.services.pricing import cost_usd, price_for
    from tenants_app.services.tenants import tenant_create

    rng = random.Random(15)
    admin = get_user_model().objects.get(username="admin")
    # seed_demo printed a generated password; this run signs in with its own
    admin.set_password(password)
    admin.save(update_fields=["password"])

    providers = {p.name: p for p in Provider.objects.all()}
    credentials = {
        name: f"key:{ApiKey.objects.filter(provider=p).order_by('pk').first().pk}"
        for name, p in providers.items()
        if ApiKey.objects.filter(provider=p).exists()
    }
    prices = {(t[1], t[2]): price_for(providers[t[1]], t[2]) for t in TARGETS}
    missing = [f"{p}/{m}" for (p, m), price in prices.items() if price is None]
    if missing:
        raise RuntimeError(f"no price for {', '.join(missing)}: the costs would be zero")

    keys = []  # (tenant, key, share of the traffic)
    for name, slug, key_names, share in TENANTS:
        tenant = tenant_create(
            name=name, slug=slug, owner=admin, actor=admin, monthly_budget_usd=Decimal("400")
        )
        for key_name in key_names:
            key, _secret = virtual_key_create(tenant=tenant, name=key_name, actor=admin)
            keys.append((tenant, key, share / len(key_names)))

    now = timezone.now().replace(second=0, microsecond=0)
    incident = (now - INCIDENT_AGO[0], now - INCIDENT_AGO[1])
    weights = [t[4] for t in TARGETS]
    rows: list[UsageRecord] = []

    def attempt(provider: str, model: str, status: str, latency: float, **error) -> dict:
        return {
            "provider": provider,
            "credential_id": credentials.get(provider, ""),
            "model": model,
            "status": status,
            "error_type": error.get("error_type", ""),
            "http_status": error.get("http_status"),
            "latency_ms": round(latency, 1),
            "answered": status == "answered",
        }

    def record(at: dt.datetime) -> UsageRecord:
        tenant, key, _share = rng.choices(keys, weights=[k[2] for k in keys])[0]
        alias, provider, model, endpoint, _w, median = rng.choices(TARGETS, weights=weights)[0]
        in_incident = incident[0] <= at < incident[1] and provider == "anthropic"
        latency = median * rng.lognormvariate(0, 0.45)
        streamed = rng.random() < 0.6
        prompt = int(rng.lognormvariate(6.6, 0.8))
        completion = int(rng.lognormvariate(5.2, 0.7))
        cached_tokens = prompt // 2 if rng.random() < 0.25 else 0
        row = UsageRecord(
            request_id=f"req_{rng.getrandbits(96):024x}",
            tenant=tenant,
            virtual_key=key,
            provider=providers[provider],
            provider_name=provider,
            credential_id=credentials.get(provider, ""),
            model=model,
            alias=alias,
            endpoint=endpoint,
            end_user=rng.choice(END_USERS) if rng.random() < 0.7 else "",
            streamed=streamed,
            created_at=at,
        )
        roll = rng.random()
        if roll < 0.015:
            row.status = UsageStatus.REFUSED
            row.error_type = rng.choice(REFUSALS)
            row.provider, row.provider_name, row.credential_id, row.model = None, "", "", ""
            row.latency_ms = rng.uniform(2, 9)
            row.streamed = False
            return row
        if roll < 0.022:
            row.status = UsageStatus.CANCELLED
            row.error_type = "client_disconnected"
            row.latency_ms = latency * rng.uniform(0.2, 0.8)
            row.ttft_ms = latency * 0.15 if streamed else None
            row.prompt_tokens = prompt
            row.attempts = [
                attempt(provider, model, "error", row.latency_ms, error_type="client_disconnected")
            ]
            return row
        if (in_incident and rng.random() < 0.7) or (not in_incident and roll < 0.04):
            error_type, http_status = (
                ("overloaded_error", 529) if in_incident else rng.choice(ERRORS)
            )
            failed = attempt(
                provider,
                model,
                "error",
                latency * 0.3,
                error_type=error_type,
                http_status=http_status,
            )
            backup = FAILOVER.get(provider) if alias in {"smart", "fast"} else None
            if backup is None or rng.random() < 0.35:
                row.status = UsageStatus.ERROR
                row.error_type = error_type
                row.latency_ms = latency * 0.3
                row.attempts = [failed]
                return row
            # the route's other candidate answered
            backup_model = next(t[2] for t in TARGETS if t[1] == backup and t[0] == alias)
            provider, model = backup, backup_model
            row.provider, row.provider_name, row.model = providers[backup], backup, backup_model
            row.credential_id = credentials.get(backup, "")
            row.attempts = [failed]
        answered = latency
        latency += sum(a["latency_ms"] for a in row.attempts)
        row.status = UsageStatus.SUCCESS
        row.latency_ms = latency
        row.ttft_ms = latency * rng.uniform(0.12, 0.3) if streamed else None
        row.prompt_tokens, row.completion_tokens = prompt, completion
        row.cached_tokens = cached_tokens
        usage = Usage(
            prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached_tokens
        )
        row.cost_usd = cost_usd(prices[(provider, model)], usage)
        row.attempts = [*row.attempts, attempt(provider, model, "answered", answered)]
        return row

    minute = now - dt.timedelta(hours=24)
    while minute < now:
        expected = busyness(minute) * rng.uniform(0.8, 1.2)
        # the fraction as a chance of one more, or the quiet hours would round to nothing
        count = int(expected) + (rng.random() < expected % 1)
        for _ in range(count):
            rows.append(record(minute + dt.timedelta(seconds=rng.uniform(0, 60))))
        minute += dt.timedelta(minutes=1)

    # the failed request the drawer opens on: a "fast" request a few minutes ago on which
    # both candidates failed, so its attempt trail has two rows
    failed_at = now - dt.timedelta(minutes=3)
    tenant, key, _share = keys[0]
    showcase = UsageRecord(
        request_id=f"req_{rng.getrandbits(96):024x}",
        tenant=tenant,
        virtual_key=key,
        provider=providers["groq"],
        provider_name="groq",
        credential_id=credentials["groq"],
        model="llama-3.1-8b-instant",
        alias="fast",
        endpoint="chat.completions",
        end_user="u-2210",
        status=UsageStatus.ERROR,
        error_type="rate_limit_error",
        latency_ms=612.0,
        streamed=True,
        attempts=[
            attempt(
                "cerebras",
                "llama3.1-8b",
                "error",
                431.0,
                error_type="server_error",
                http_status=503,
            ),
            attempt(
                "groq",
                "llama-3.1-8b-instant",
                "error",
                181.0,
                error_type="rate_limit_error",
                http_status=429,
            ),
        ],
        created_at=failed_at,
    )
    rows = [row for row in rows if row.created_at < failed_at - dt.timedelta(seconds=20)]
    rows += [showcase, *(record(failed_at + dt.timedelta(seconds=s)) for s in (25, 70, 110))]
    # an error among the newest rows would not be the one the drawer opens on
    for row in rows[-3:]:
        if row.status != UsageStatus.SUCCESS:
            row.status, row.error_type = UsageStatus.SUCCESS, ""
    UsageRecord.objects.bulk_create(rows, batch_size=1000)

    # provider health every ten minutes; Anthropic fails its checks during the incident
    checks = []
    at = now - dt.timedelta(hours=24)
    while at < now - dt.timedelta(minutes=5):
        for name, provider in providers.items():
            down = name == "anthropic" and incident[0] <= at < incident[1]
            healthy = not down and rng.random() > 0.01
            checks.append(
                HealthCheck(
                    provider=provider,
                    healthy=healthy,
                    latency_ms=rng.uniform(80, 400),
                    error_type="" if healthy else "overloaded_error",
                    checked_at=at,
                )
            )
        at += dt.timedelta(minutes=10)
    HealthCheck.objects.bulk_create(checks, batch_size=1000)
    print(f"seeded {len(rows):,} requests for {len(TENANTS)} tenants and {len(checks):,} checks")
    return {"failed_request": showcase.request_id}


def bar_position(page, chart_id: str) -> dict:
    """Where the busiest bar of the chart's first third is, read from Chart.js itself (as
    the dashboard's browser test does): its tooltip then opens over the quiet night hours
    instead of hiding the day's peak."""
    return page.evaluate(
        """(id) => {
            const canvas = document.querySelector(`canvas[data-chart-canvas="${id}"]`);
            const chart = Chart.getChart(canvas);
            const count = chart.data.labels.length;
            const totals = chart.data.labels.map((_, i) =>
                chart.data.datasets.reduce((sum, d) => sum + (d.data[i] || 0), 0));
            const early = totals.slice(0, Math.ceil(count / 3));
            const busiest = early.indexOf(Math.max(...early));
            const point = chart.getDatasetMeta(0).data[busiest];
            const box = canvas.getBoundingClientRect();
            return {x: box.left + point.x, y: box.top + (point.y + chart.chartArea.bottom) / 2};
        }""",
        chart_id,
    )


def take_screenshots(url: str, password: str, failed_request: str) -> list[Path]:
    import re

    from playwright.sync_api import expect, sync_playwright

    dashboard = IMAGES / "console-dashboard.png"
    requests = IMAGES / "console-requests.png"
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport=VIEWPORT, color_scheme="light")
            page = context.new_page()
            page.set_default_timeout(20_000)
            page.on("pageerror", lambda error: errors.append(str(error)))

            page.goto(url + "/console/login/")
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(re.compile(r".*/console/(?!login).*"))

            page.goto(url + "/console/?range=day")
            for canvas in page.locator("canvas[data-chart-canvas]").all():
                expect(canvas).to_have_attribute("data-drawn", "true")
            where = bar_position(page, "requests")
            page.mouse.move(where["x"], where["y"])
            expect(page.locator('[data-chart="requests"] .dash-tooltip')).to_be_visible()
            page.screenshot(path=str(dashboard))

            page.mouse.move(0, 0)
            page.goto(url + "/console/requests/")
            row = page.locator(
                "tr[data-request-row]", has=page.locator(f'a[href*="{failed_request}"]')
            )
            row.locator("td").nth(3).click()
            drawer = page.locator("#request-drawer")
            expect(drawer).to_be_visible()
            expect(drawer.locator("tr[data-attempt]")).to_have_count(2)
            page.screenshot(path=str(requests))
        finally:
            browser.close()
    if errors:
        raise RuntimeError(f"JavaScript errors on the pages: {errors}")
    return [dashboard, requests]


def main() -> int:
    if not os.access(CHROMIUM, os.X_OK):
        print(f"{CHROMIUM} is missing (scripts/ensure-chromium installs it)", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="aipk-screenshot-"))
    # the throwaway database and an in-process cache, whatever this shell points at (for
    # this process too, which writes the traffic)
    for key in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        os.environ.pop(key, None)
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
        DEBUG="true",
        DJANGO_SETTINGS_MODULE="aipk_site.settings",
        PYTHONUNBUFFERED="1",
    )
    processes = Processes(env, workdir)
    password = secrets.token_urlsafe(16)
    try:
        with sigterm_as_exit():
            sim_port, port = free_port(), free_port()
            processes.run("migrate", "--noinput")
            simulator = processes.start("simulator", "simulate_providers", "--port", str(sim_port))
            wait_for_port(sim_port, simulator, "the provider simulator")
            processes.run(
                "seed_demo",
                "--quiet",
                "--simulator-url",
                f"http://127.0.0.1:{sim_port}",
                "--base-url",
                f"http://127.0.0.1:{port}",
            )
            os.environ.update(env)
            sys.path.insert(0, str(ROOT))
            seeded = seed_traffic(password)
            server = processes.start("server", "run_embedded", "--noreload", f"127.0.0.1:{port}")
            wait_for_port(port, server, "the aipk server")
            written = take_screenshots(f"http://127.0.0.1:{port}", password, **seeded)
    except BaseException:
        print(processes.log_tail(), file=sys.stderr)
        raise
    finally:
        processes.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    for path in written:
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
