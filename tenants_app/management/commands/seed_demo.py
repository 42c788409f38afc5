"""Seed a demo on the provider simulator and print a virtual key with ready-to-paste commands.

``make run`` calls this after starting the simulator. Safe to run again and again:

- one provider per type (openai, anthropic, gemini, cerebras, qwen, openrouter) and an
  openai-compatible "groq", each on the simulator's path for its type with one fake
  API key. A provider that already exists keeps everything except its base URL, which
  follows the simulator's port; a provider of that name that does not point at a local
  simulator (someone's real account) is left entirely alone;
- a superuser "admin" with a generated password (printed once, stored only as its hash),
  only while the database has no superuser at all;
- a tenant "demo" owned by that admin, with a monthly budget and RPM/TPM limits;
- global routes "fast", "smart", "cheap" and "balanced" (existing ones are kept), and
  the bundled price table if the database has no prices at all (a flushed database);
- a virtual key "demo key": virtual keys are stored hashed, so each run revokes the
  demo tenant's previous "demo key"(s) and prints a fresh one;
- the OAuth providers (openai, anthropic, gemini: authorization code; qwen: device code;
  openrouter: its PKCE key exchange) pointed at the simulator's authorisation server
  through their ordinary ``oauth_*`` settings, with a demo client id, so the console's
  *Connect* and device flow complete offline. An OAuth URL an admin pointed elsewhere,
  and a client id or secret already entered, are kept;
- then, after the seed is committed, every demo provider is health-checked and its models
  discovered against the simulator (the services the scheduled jobs run), within
  ``--check-timeout`` seconds, so the console shows them checked from the start. A
  simulator that does not answer is a warning, not a failure.

Everything goes through the services, so every change is in the audit log.

With DEBUG off it refuses to run unless given ``--force``: a production database
must not get a superuser whose password went to a terminal, fake provider keys
and a tenant with a printed key because someone ran the wrong command.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import urlopen

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from aipk_site.infra.audit import audit_record
from providers_app.models import ApiKey, HealthCheck, Provider
from providers_app.services.credentials import api_key_add
from providers_app.services.discovery import adiscover_models
from providers_app.services.health import acheck_all_health
from providers_app.services.providers import provider_create, provider_update
from tenants_app.models import ModelRoute, Pricing, RouteStrategy, Tenant, VirtualKey
from tenants_app.services.keys import virtual_key_create, virtual_key_revoke
from tenants_app.services.pricing import pricing_load_bundled, pricing_set
from tenants_app.services.routes import route_create
from tenants_app.services.tenants import tenant_create

DEMO_TENANT_SLUG = "demo"
DEMO_KEY_NAME = "demo key"
ADMIN_USERNAME = "admin"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}

# name → (type, simulator path, default model)
PROVIDERS = {
    "openai": ("openai", "/openai/v1", "gpt-4o-mini"),
    "anthropic": ("anthropic", "/anthropic", "claude-sonnet-4-20250514"),
    "gemini": ("gemini", "/gemini", "gemini-2.5-flash"),
    "cerebras": ("cerebras", "/cerebras/v1", "llama3.1-8b"),
    "qwen": ("qwen", "/qwen/v1", "qwen3-coder-flash"),
    "openrouter": ("openrouter", "/openrouter/api/v1", "openai/gpt-4o-mini"),
    "groq": ("openai-compatible", "/openai/v1", "llama-3.1-8b-instant"),
}

# name → OAuth settings on the simulator's authorisation server (docs/SIMULATOR.md). The
# simulator accepts any client id; one starting with "confidential-" must send
# "secret-<client id>", which the gemini one does because Google needs the secret.
# qwen's ``approval=page`` keeps its device code pending until someone approves it on the
# simulator's verification page, as on chat.qwen.ai; ``interval=0``: Qwen's device reply
# advertises no polling interval, so its simulated server enforces none either.
SIM_CODE_FLOW = {"oauth_authorize_url": "/oauth/authorize", "oauth_token_url": "/oauth/token"}
OAUTH = {
    "openai": {**SIM_CODE_FLOW, "oauth_client_id": "aipk-demo-openai"},
    "anthropic": {**SIM_CODE_FLOW, "oauth_client_id": "aipk-demo-anthropic"},
    "gemini": {
        **SIM_CODE_FLOW,
        "oauth_client_id": "confidential-aipk-demo-gemini",
        "oauth_client_secret": "secret-confidential-aipk-demo-gemini",
    },
    "qwen": {
        "oauth_device_url": "/qwen-oauth/api/v1/oauth2/device/code?approval=page&interval=0",
        "oauth_token_url": "/qwen-oauth/api/v1/oauth2/token",
        "oauth_client_id": "aipk-demo-qwen",
    },
    # OpenRouter's flow needs no client id
    "openrouter": {
        "oauth_authorize_url": "/openrouter/auth",
        "oauth_token_url": "/openrouter/api/v1/auth/keys",
    },
}
OAUTH_URL_FIELDS = ("oauth_authorize_url", "oauth_token_url", "oauth_device_url")
DEFAULT_CHECK_TIMEOUT_S = 20.0

# The bundled price table has no openai-compatible rows; Groq's public list price
# (USD per million tokens) for the demo's model, set on the groq provider only.
GROQ_PRICE = ("llama-3.1-8b-instant", Decimal("0.05"), Decimal("0.08"))


def _c(provider: str, model: str) -> dict[str, str]:
    return {"provider": provider, "model": model}


# alias → (strategy, candidates); every model except groq's is in the bundled price table
ROUTES = {
    "fast": (
        RouteStrategy.FAILOVER,
        [_c("cerebras", "llama3.1-8b"), _c("groq", "llama-3.1-8b-instant")],
    ),
    "smart": (
        RouteStrategy.FAILOVER,
        [_c("openai", "gpt-4o"), _c("anthropic", "claude-sonnet-4-20250514")],
    ),
    "cheap": (
        RouteStrategy.CHEAPEST_FIRST,
        [
            _c("openai", "gpt-4o-mini"),
            _c("gemini", "gemini-2.5-flash-lite"),
            _c("qwen", "qwen3-coder-flash"),
            _c("cerebras", "llama3.1-8b"),
        ],
    ),
    "balanced": (
        RouteStrategy.ROUND_ROBIN,
        [
            _c("openai", "gpt-4o-mini"),
            _c("anthropic", "claude-haiku-4-5-20251001"),
            _c("gemini", "gemini-2.5-flash"),
            _c("openrouter", "openai/gpt-4o-mini"),
        ],
    ),
}

TENANT_LIMITS = {
    "monthly_budget_usd": Decimal("50.00"),
    "default_rpm": 600,
    "default_tpm": 1_000_000,
}


def _is_local_simulator(url: str, path: str) -> bool:
    """A base URL the demo set up earlier: a loopback host and the simulator path."""
    parts = urlsplit(url or "")
    return parts.hostname in LOCAL_HOSTS and parts.path.rstrip("/") == path


def _is_local(url: str) -> bool:
    return urlsplit(url or "").hostname in LOCAL_HOSTS


def _oauth_changes(provider: Provider, simulator_url: str) -> dict[str, str]:
    """The demo's OAuth settings that differ from the provider's: URLs follow the
    simulator unless an admin pointed them at a real server; a client id or secret
    already entered is kept."""
    changes = {}
    for field, value in OAUTH.get(provider.name, {}).items():
        current = getattr(provider, field) or ""
        if field in OAUTH_URL_FIELDS:
            value = simulator_url + value
            if current and not _is_local(current):
                continue
        elif current:
            continue
        if current != value:
            changes[field] = value
    return changes


def _simulator_answers(simulator_url: str) -> bool:
    # urllib rather than httpx: httpx logs every request at INFO, into the demo's output
    try:
        with urlopen(f"{simulator_url}/_sim/health", timeout=2.0) as reply:
            return reply.status == 200
    except OSError:  # refused, timed out, HTTP error status
        return False


async def _check_and_discover(
    providers: list[Provider], *, seconds: float
) -> tuple[list[HealthCheck], dict[str, int]]:
    """The health checks and model discovery the scheduled jobs run, all at once.

    own_client: this event loop lives for one call, so the probes must not borrow the
    process's pooled clients, which belong to the loop that made them."""

    async def discover(provider: Provider) -> int:
        return len(await adiscover_models(provider, refresh=True, own_client=True))

    async with asyncio.timeout(seconds):
        checks, counts = await asyncio.gather(
            acheck_all_health(providers=providers, own_client=True),
            asyncio.gather(*(discover(p) for p in providers), return_exceptions=True),
        )
    models = {
        provider.name: count
        for provider, count in zip(providers, counts, strict=True)
        if isinstance(count, int)
    }
    return checks, models


def _python() -> str:
    """The interpreter running this command, relative to the current directory if inside it."""
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


class Command(BaseCommand):
    help = (
        "Seed a demo (providers on the simulator, a tenant, routes, an admin) and print "
        "a fresh virtual key with commands that use it. Idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--simulator-url",
            default="http://127.0.0.1:8100",
            help="root URL of the running provider simulator (default %(default)s)",
        )
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="root URL the aipk server will answer on (default %(default)s)",
        )
        parser.add_argument(
            "--quiet",
            action="store_true",
            help="print only the key and how to use it, not each object seeded",
        )
        parser.add_argument(
            "--check-timeout",
            type=float,
            default=DEFAULT_CHECK_TIMEOUT_S,
            help="seconds allowed for health-checking the demo providers and discovering "
            "their models on the simulator; 0 skips it (default %(default)s)",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="seed even with DEBUG off (never on a production database)",
        )

    def handle(self, *args, **options):
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "DEBUG is off: seed_demo creates a superuser with a printed password, demo "
                "providers and a demo tenant, which a production database must not get. "
                "Run it with DEBUG=true, or pass --force if this really is a demo database."
            )
        simulator_url = options["simulator_url"].rstrip("/")
        base_url = options["base_url"].rstrip("/")
        for option, url in (("--simulator-url", simulator_url), ("--base-url", base_url)):
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
                raise CommandError(f"{option} must be an http(s) URL, got {url!r}")
        self.quiet = options["quiet"]

        with transaction.atomic():
            admin, password = self._admin()
            self._providers(simulator_url, actor=admin)
            tenant = self._tenant(admin)
            self._routes(admin)
            secret = self._demo_key(tenant, admin)
        if options["check_timeout"] > 0:
            self._check(simulator_url, timeout=options["check_timeout"])
        self._print_usage(base_url, secret, admin, password)

    # --- seeding --------------------------------------------------------------

    def _note(self, message: str) -> None:
        if not self.quiet:
            self.stdout.write(f"  {message}")

    def _admin(self):
        """(the admin user or None, its new password or None)."""
        User = get_user_model()
        existing = User.objects.filter(username=ADMIN_USERNAME).first()
        if existing is not None:
            self._note(f"user {ADMIN_USERNAME!r} exists: password unchanged")
            return existing, None
        superuser = User.objects.filter(is_superuser=True).order_by("pk").first()
        if superuser is not None:
            self._note(f"a superuser exists ({superuser.get_username()!r}): no demo admin made")
            return superuser, None
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser(username=ADMIN_USERNAME, email="", password=password)
        audit_record(
            action="user.create",
            obj=user,
            actor_label="seed_demo",
            changes={"username": ADMIN_USERNAME, "superuser": True},
        )
        self._note(f"superuser {ADMIN_USERNAME!r} created")
        return user, password

    def _providers(self, simulator_url: str, *, actor) -> None:
        for name, (provider_type, path, model) in PROVIDERS.items():
            base_url = simulator_url + path
            provider = Provider.objects.filter(name=name).first()
            if provider is None:
                provider = provider_create(
                    name=name,
                    type=provider_type,
                    base_url=base_url,
                    default_model=model,
                    actor=actor,
                    **_oauth_changes(Provider(name=name), simulator_url),
                )
                self._note(f"provider {name!r} created ({provider_type}, {base_url})")
            elif provider.type != provider_type or not _is_local_simulator(provider.base_url, path):
                self._note(f"provider {name!r} exists and is not the demo's: left as it is")
                continue
            else:
                changes = _oauth_changes(provider, simulator_url)
                if provider.base_url != base_url:
                    changes["base_url"] = base_url
                if changes:
                    # one update, so one audit event per provider and run
                    provider_update(provider=provider, actor=actor, **changes)
                    self._note(f"provider {name!r} updated ({', '.join(sorted(changes))})")
                else:
                    self._note(f"provider {name!r} up to date")
            if not ApiKey.objects.filter(provider=provider).exists():
                api_key_add(
                    provider=provider,
                    label="demo",
                    secret=f"sk-demo-{name}-0001",
                    actor=actor,
                )
                self._note(f"provider {name!r}: fake API key added")
        if not Pricing.objects.filter(provider__isnull=True).exists():
            # the migration loads the bundled table; a flushed database has lost it, and
            # without prices "cheap" (cheapest_first) would just be a failover
            pricing_load_bundled()
            self._note("bundled price table loaded")
        groq = Provider.objects.filter(name="groq", type="openai-compatible").first()
        model, price_in, price_out = GROQ_PRICE
        if groq is not None and not Pricing.objects.filter(provider=groq, model=model).exists():
            pricing_set(
                provider_type=groq.type,
                provider=groq,
                model=model,
                input_per_million=price_in,
                output_per_million=price_out,
                actor=actor,
            )
            self._note(f"price for groq/{model} set")

    def _tenant(self, admin) -> Tenant:
        tenant = Tenant.objects.filter(slug=DEMO_TENANT_SLUG).first()
        if tenant is not None:
            self._note(f"tenant {DEMO_TENANT_SLUG!r} exists")
            return tenant
        tenant = tenant_create(
            name="Demo", slug=DEMO_TENANT_SLUG, owner=admin, actor=admin, **TENANT_LIMITS
        )
        self._note(
            f"tenant {DEMO_TENANT_SLUG!r} created "
            f"(${TENANT_LIMITS['monthly_budget_usd']}/month, "
            f"{TENANT_LIMITS['default_rpm']} RPM, {TENANT_LIMITS['default_tpm']} TPM)"
        )
        return tenant

    def _routes(self, admin) -> None:
        for alias, (strategy, candidates) in ROUTES.items():
            if ModelRoute.objects.filter(tenant=None, alias=alias).exists():
                self._note(f"route {alias!r} exists: kept")
                continue
            names = {c["provider"] for c in candidates}
            if Provider.objects.filter(name__in=names).count() != len(names):
                self._note(f"route {alias!r} skipped: a provider it needs is missing")
                continue
            route_create(
                tenant=None, alias=alias, strategy=strategy, candidates=candidates, actor=admin
            )
            chain = " → ".join(f"{c['provider']}/{c['model']}" for c in candidates)
            self._note(f"route {alias!r} created ({strategy}: {chain})")

    def _demo_key(self, tenant: Tenant, admin) -> str:
        previous = VirtualKey.objects.filter(
            tenant=tenant, name=DEMO_KEY_NAME, revoked_at__isnull=True
        )
        for key in previous:
            virtual_key_revoke(key=key, actor=admin)
            self._note(f"previous demo key {key.prefix}… revoked")
        key, secret = virtual_key_create(tenant=tenant, name=DEMO_KEY_NAME, actor=admin)
        self._note(f"virtual key {key.prefix}… created for tenant {tenant.slug!r}")
        return secret

    def _check(self, simulator_url: str, *, timeout: float) -> None:
        """Health-check every demo provider and discover its models, printing one summary
        line (also with --quiet): the console then shows them checked, not "not checked
        yet" until the scheduled jobs' first run."""
        providers = [
            provider
            for provider in Provider.objects.filter(name__in=PROVIDERS, enabled=True)
            if _is_local_simulator(provider.base_url, PROVIDERS[provider.name][1])
        ]
        if not providers:
            return
        if not _simulator_answers(simulator_url):
            self.stderr.write(
                f"warning: the provider simulator does not answer at {simulator_url}: the demo "
                "providers stay 'not checked yet' until the scheduled health check and model "
                "discovery run (start it with `manage.py simulate_providers`)"
            )
            return
        try:
            checks, models = async_to_sync(_check_and_discover)(providers, seconds=timeout)
        except TimeoutError:
            self.stderr.write(
                f"warning: checking the demo providers took longer than {timeout:g} s: the "
                "scheduled health check and model discovery will finish the job"
            )
            return
        provider_checks = [
            check for check in checks if not check.api_key_id and not check.oauth_credential_id
        ]
        healthy = sum(check.healthy for check in provider_checks)
        self.stdout.write(
            f"Checked {len(provider_checks)} providers on the simulator ({healthy} healthy) "
            f"and discovered {sum(models.values())} models."
        )
        for check in provider_checks:
            if not check.healthy:
                self.stderr.write(
                    f"warning: provider {check.provider.name!r} is unhealthy: "
                    f"{check.error_type or 'unknown error'}"
                )

    # --- output ---------------------------------------------------------------

    def _print_usage(self, base_url: str, secret: str, admin, password: str | None) -> None:
        python = _python()
        body = '{"model":"smart","messages":[{"role":"user","content":"Hello"}]}'
        lines = [
            "",
            "Demo virtual key (shown once; `manage.py seed_demo` makes a new one):",
            f"  {secret}",
            "",
            "Try it (routes: fast, smart, cheap, balanced; or <provider>/<model>):",
            "",
            f"curl {base_url}/v1/chat/completions \\",
            f'  -H "Authorization: Bearer {secret}" \\',
            '  -H "Content-Type: application/json" \\',
            f"  -d '{body}'",
            "",
            f"{python} - <<'EOF'",
            "from openai import OpenAI",
            f'client = OpenAI(base_url="{base_url}/v1", api_key="{secret}")',
            "stream = client.chat.completions.create(",
            '    model="fast", messages=[{"role": "user", "content": "Hello"}], stream=True',
            ")",
            "for chunk in stream:",
            "    if chunk.choices:",
            '        print(chunk.choices[0].delta.content or "", end="", flush=True)',
            "print()",
            "EOF",
            "",
            f"{python} -c 'import anthropic; print(anthropic.Anthropic("
            f'base_url="{base_url}", api_key="{secret}").messages.create('
            'model="smart", max_tokens=256, '
            'messages=[{"role": "user", "content": "Hello"}]).content[0].text)\'',
            "",
        ]
        if password is not None:
            lines += [
                f"Console: {base_url}/console/  user {ADMIN_USERNAME}  password {password}",
                "  (also for /admin/; shown only now; change it with "
                "`manage.py changepassword admin`)",
            ]
        elif admin is not None:
            user = admin.get_username()
            lines.append(f"Console: {base_url}/console/  user {user} (exists; password unchanged)")
        self.stdout.write("\n".join(lines))
