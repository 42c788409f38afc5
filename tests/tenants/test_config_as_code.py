"""Configuration as code: ``manage.py aipk_config export`` / ``apply FILE`` (docs/CONFIG.md).

A realistic setup is made through the services, exported, applied onto an empty
database and exported again; every kind of broken file is refused naming its path
and changes nothing; secrets never appear in a file or in the command's output.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from aipk_site.infra import config_sections
from aipk_site.infra.config_sections import Change, PlanContext
from providers_app.models import ApiKey, OAuthCredential, Provider
from providers_app.services.credentials import (
    api_key_add,
    api_key_replace_secret,
    api_key_set_state,
)
from providers_app.services.providers import provider_create, provider_update
from tenants_app.models import AuditEvent, ModelRoute, Pricing, Tenant, VirtualKey
from tenants_app.services.keys import virtual_key_create, virtual_key_update
from tenants_app.services.pricing import pricing_set
from tenants_app.services.routes import route_create, route_update
from tenants_app.services.secrets import secret_hash
from tenants_app.services.tenants import tenant_create, tenant_update

OPENAI_MAIN = "sk-openai-main-secret-0001"
OPENAI_BACKUP = "sk-openai-backup-secret-0002"
ANTHROPIC_KEY = "sk-ant-config-secret-0003"
OAUTH_ACCESS = "oauth-access-token-secret-0004"
OAUTH_CLIENT_SECRET = "oauth-client-secret-0005"
ENVIRONMENT = {
    "AIPK_PROVIDER_OPENAI_PROD_KEY_MAIN": OPENAI_MAIN,
    "AIPK_PROVIDER_OPENAI_PROD_KEY_BACKUP": OPENAI_BACKUP,
    "AIPK_PROVIDER_ANTHROPIC_KEY_PRIMARY": ANTHROPIC_KEY,
    "AIPK_PROVIDER_ANTHROPIC_OAUTH_CLIENT_SECRET": OAUTH_CLIENT_SECRET,
}
PROVIDER_SECRETS = (OPENAI_MAIN, OPENAI_BACKUP, ANTHROPIC_KEY, OAUTH_ACCESS, OAUTH_CLIENT_SECRET)


@pytest.fixture
def environment(monkeypatch):
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def seeded(db) -> dict[str, str]:
    """Two providers with keys (one disabled), an OAuth account, two tenants with keys and
    limits, a global and a tenant route of two candidates each, and custom prices. Returns
    the virtual keys' secrets."""
    openai = provider_create(
        name="openai-prod",
        type="openai",
        base_url="http://127.0.0.1:9/openai/v1",
        default_model="gpt-4o-mini",
        settings={"organization": "org-acme", "timeouts": {"connect": 3}},
    )
    anthropic = provider_create(
        name="anthropic",
        type="anthropic",
        key_strategy="round_robin",
        oauth_client_id="client-123",
        oauth_client_secret=OAUTH_CLIENT_SECRET,
        oauth_token_url="http://127.0.0.1:9/oauth/token",
    )
    api_key_add(provider=openai, label="main", secret=OPENAI_MAIN)
    backup = api_key_add(provider=openai, label="backup", secret=OPENAI_BACKUP)
    api_key_set_state(key=backup, state=ApiKey.State.DISABLED)
    api_key_add(provider=anthropic, label="primary", secret=ANTHROPIC_KEY)
    OAuthCredential.objects.create(
        provider=anthropic, account_label="ops@example.com", access_token=OAUTH_ACCESS, last4="0004"
    )
    acme = tenant_create(
        name="Acme",
        slug="acme",
        actor=None,
        monthly_budget_usd=Decimal("250.5"),
        default_rpm=600,
        pii_redaction=True,
        allowed_providers=["openai-prod", "anthropic"],
    )
    globex = tenant_create(name="Globex", slug="globex", actor=None, default_tpm=100000)
    secrets = {}
    _, secrets["acme/ci"] = virtual_key_create(
        tenant=acme,
        name="ci",
        actor=None,
        rpm=60,
        tpm=50000,
        monthly_budget_usd=Decimal("20"),
        allowed_models=["chat", "openai-prod/gpt-4o"],
        cache_enabled=True,
    )
    _, secrets["acme/app"] = virtual_key_create(
        tenant=acme, name="app", actor=None, max_concurrent_streams=4, unsupported_params="drop"
    )
    _, secrets["globex/ci"] = virtual_key_create(tenant=globex, name="ci", actor=None, rpm=10)
    route_create(
        tenant=None,
        alias="chat",
        candidates=[
            {"provider": "openai-prod", "model": "gpt-4o"},
            {"provider": "anthropic", "model": "claude-sonnet-4"},
        ],
        actor=None,
    )
    route_create(
        tenant=acme,
        alias="fast",
        strategy="round_robin",
        candidates=[
            {"provider": "anthropic", "model": "claude-haiku"},
            {"provider": "openai-prod", "model": "gpt-4o-mini"},
        ],
        actor=None,
    )
    pricing_set(
        provider_type="openai",
        provider=openai,
        model="gpt-4o",
        input_per_million="2.5",
        output_per_million="10",
        cached_input_per_million="1.25",
        actor=None,
    )
    pricing_set(
        provider_type="anthropic",
        model="claude-haiku",
        input_per_million="0.8",
        output_per_million="4",
        actor=None,
    )
    return secrets


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("aipk_config", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def export() -> str:
    return run("export")[0]


def refused(*args: str) -> str:
    """The command's stderr, having checked that it failed."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="nothing was changed"):
        call_command("aipk_config", *args, stdout=out, stderr=err)
    assert out.getvalue() == ""
    return err.getvalue()


def write(tmp_path, text: str) -> str:
    path = tmp_path / "aipk.yaml"
    path.write_text(text)
    return str(path)


def without_oauth_accounts(text: str) -> dict:
    document = yaml.safe_load(text)
    for provider in document["providers"]:
        provider.pop("oauth_accounts", None)
    return document


def empty_the_database() -> None:
    Pricing.objects.all().delete()
    ModelRoute.objects.all().delete()
    Tenant.objects.all().delete()
    Provider.objects.all().delete()


def test_it_exports_every_section_with_secrets_as_environment_references(seeded):
    text = export()
    document = yaml.safe_load(text)

    assert list(document) == ["version", "providers", "tenants", "routes", "prices", "alerts"]
    openai, anthropic = sorted(document["providers"], key=lambda p: p["name"], reverse=True)
    assert openai["api_keys"] == [
        {"label": "main", "api_key": {"env": "AIPK_PROVIDER_OPENAI_PROD_KEY_MAIN"}},
        {
            "label": "backup",
            "api_key": {"env": "AIPK_PROVIDER_OPENAI_PROD_KEY_BACKUP"},
            "enabled": False,
        },
    ]
    assert openai["settings"] == {"organization": "org-acme", "timeouts": {"connect": 3.0}}
    assert anthropic["oauth_client_secret"] == {
        "env": "AIPK_PROVIDER_ANTHROPIC_OAUTH_CLIENT_SECRET"
    }
    assert anthropic["oauth_accounts"] == [{"account_label": "ops@example.com", "state": "active"}]
    acme = document["tenants"][0]
    assert acme["monthly_budget_usd"] == "250.5000"
    assert acme["allowed_providers"] == ["anthropic", "openai-prod"]
    assert [key["name"] for key in acme["keys"]] == ["app", "ci"]
    assert acme["keys"][1]["rpm"] == 60
    assert document["routes"][1] == {
        "alias": "fast",
        "tenant": "acme",
        "strategy": "round_robin",
        "candidates": [
            {"provider": "anthropic", "model": "claude-haiku"},
            {"provider": "openai-prod", "model": "gpt-4o-mini"},
        ],
    }
    assert {"provider": "openai-prod", "model": "gpt-4o"}.items() <= document["prices"][0].items()
    for secret in (*PROVIDER_SECRETS, *seeded.values()):
        assert secret not in text
    for key in VirtualKey.objects.all():
        assert key.key_hash not in text


def test_it_writes_the_export_to_a_file(seeded, tmp_path):
    target = tmp_path / "out.yaml"
    out, _ = run("export", "--output", str(target))
    assert out == ""
    assert target.read_text() == export()


def test_it_round_trips_onto_an_empty_database(seeded, environment, tmp_path):
    first = export()
    path = write(tmp_path, first)
    empty_the_database()

    out, err = run("apply", path)

    assert "+ create provider openai-prod (openai)" in out
    assert "+ create api key openai-prod/backup (disabled)" in out
    assert "+ create route fast (tenant acme)" in out
    # OAuth accounts come from a sign-in: apply says so and creates none
    assert "! oauth account anthropic/ops@example.com is not connected" in out
    second = export()
    assert without_oauth_accounts(second) == without_oauth_accounts(first)
    assert second == first.replace(
        "  oauth_accounts:\n  - account_label: ops@example.com\n    state: active\n", ""
    )
    assert ApiKey.objects.get(label="main").secret == OPENAI_MAIN
    assert Provider.objects.get(name="anthropic").oauth_client_secret == OAUTH_CLIENT_SECRET
    # each new virtual key's secret is printed once, on stderr, and it is the key's
    printed = dict(re.findall(r"new virtual key (\S+): (\S+)", err))
    assert set(printed) == {"acme/ci", "acme/app", "globex/ci"}
    for name, secret in printed.items():
        slug, key_name = name.split("/")
        key = VirtualKey.objects.get(tenant__slug=slug, name=key_name)
        assert key.key_hash == secret_hash(secret)
    audit_log = str(list(AuditEvent.objects.values_list("changes", flat=True)))
    assert "provider.create" in str(list(AuditEvent.objects.values_list("action", flat=True)))
    for secret in PROVIDER_SECRETS:
        assert secret not in out + err
        assert secret not in audit_log


def test_it_changes_nothing_on_a_second_apply(seeded, environment, tmp_path):
    path = write(tmp_path, export())
    events = AuditEvent.objects.count()
    stamps = sorted(Tenant.objects.values_list("updated_at", flat=True)) + sorted(
        ModelRoute.objects.values_list("updated_at", flat=True)
    )

    with CaptureQueriesContext(connection) as queries:
        out, err = run("apply", path)

    assert out.splitlines()[-1] == "no changes"
    assert not [line for line in out.splitlines() if line[:1] in "+~-"]
    assert err == ""
    writes = [q["sql"] for q in queries if re.match(r"\s*(INSERT|UPDATE|DELETE)", q["sql"])]
    assert writes == []
    assert AuditEvent.objects.count() == events
    assert stamps == sorted(Tenant.objects.values_list("updated_at", flat=True)) + sorted(
        ModelRoute.objects.values_list("updated_at", flat=True)
    )


def test_it_brings_a_drifted_database_back_to_the_file(seeded, environment, tmp_path):
    original = export()
    path = write(tmp_path, original)
    acme = Tenant.objects.get(slug="acme")
    tenant_update(tenant=acme, actor=None, default_rpm=1, allowed_providers=["anthropic"])
    virtual_key_update(key=VirtualKey.objects.get(tenant=acme, name="ci"), actor=None, rpm=5)
    route_update(
        route=ModelRoute.objects.get(alias="chat"),
        candidates=[{"provider": "anthropic", "model": "claude-sonnet-4"}],
        actor=None,
    )
    openai = Provider.objects.get(name="openai-prod")
    provider_update(provider=openai, default_model="gpt-5")
    api_key_replace_secret(key=ApiKey.objects.get(label="main"), secret="sk-drifted-secret-9999")
    api_key_set_state(key=ApiKey.objects.get(label="backup"), state=ApiKey.State.ACTIVE)
    pricing_set(
        provider_type="openai",
        provider=openai,
        model="gpt-4o",
        input_per_million="3",
        output_per_million="10",
        actor=None,
    )

    out, _ = run("apply", path)

    assert "~ update tenant acme default_rpm: 1 -> 600" in out
    assert (
        "~ update tenant acme allowed_providers: ['anthropic'] -> ['anthropic', 'openai-prod']"
        in out
    )
    assert "~ update virtual key acme/ci rpm: 5 -> 60" in out
    assert "~ update provider openai-prod default_model: 'gpt-5' -> 'gpt-4o-mini'" in out
    assert "~ update api key openai-prod/main secret: (changed)" in out
    assert "~ update api key openai-prod/backup enabled: true -> false" in out
    assert "~ update price openai-prod/gpt-4o input_per_million: 3.000000 -> 2.500000" in out
    assert "~ update route chat candidates:" in out
    assert "sk-drifted-secret-9999" not in out and OPENAI_MAIN not in out
    assert export() == original
    assert ApiKey.objects.get(label="main").secret == OPENAI_MAIN
    assert run("apply", path)[0].splitlines()[-1] == "no changes"


def test_it_matches_virtual_keys_by_name_within_their_tenant(seeded, environment, tmp_path):
    document = yaml.safe_load(export())
    globex = next(t for t in document["tenants"] if t["slug"] == "globex")
    globex["keys"][0]["rpm"] = 99

    out, _ = run("apply", write(tmp_path, yaml.safe_dump(document)))

    assert [line for line in out.splitlines() if line.startswith("~")] == [
        "~ update virtual key globex/ci rpm: 10 -> 99"
    ]
    assert VirtualKey.objects.get(tenant__slug="globex", name="ci").rpm == 99
    assert VirtualKey.objects.get(tenant__slug="acme", name="ci").rpm == 60


BROKEN = {
    "bad yaml": (
        lambda text: text.replace("tenants:", "tenants: [unclosed", 1),
        "line ",
    ),
    "schema": (
        lambda text: text.replace("\n    rpm: 60\n", "\n    rpm: many\n", 1),
        "tenants[0].keys[1].rpm: 'many' is not of type 'integer', 'null'",
    ),
    "unknown section": (
        lambda text: text + "alarms: []\n",
        "(document): Additional properties are not allowed ('alarms' was unexpected)",
    ),
    "unknown provider in a route": (
        lambda text: text.replace(
            "- provider: openai-prod\n    model: gpt-4o\n", "- provider: x\n    model: gpt-4o\n", 1
        ),
        'routes[0].candidates[0].provider: unknown provider "x"',
    ),
    "unknown tenant of a route": (
        lambda text: text.replace("tenant: acme", "tenant: initech", 1),
        'routes[1].tenant: unknown tenant "initech"',
    ),
    "duplicate tenant": (
        lambda text: text.replace("slug: globex", "slug: acme", 1),
        "tenants[1].slug: duplicate tenant 'acme'",
    ),
    "missing env secret": (
        lambda text: text.replace("KEY_MAIN", "KEY_NOT_SET", 1),
        "providers[1].api_keys[0].api_key: environment variable "
        "AIPK_PROVIDER_OPENAI_PROD_KEY_NOT_SET is not set",
    ),
    "missing secret file": (
        lambda text: text.replace(
            "env: AIPK_PROVIDER_OPENAI_PROD_KEY_MAIN", "file: /nonexistent/aipk-key", 1
        ),
        "providers[1].api_keys[0].api_key: cannot read secret file /nonexistent/aipk-key: "
        "No such file or directory",
    ),
    "a secret written in the file": (
        lambda text: text.replace(
            "{env: AIPK_PROVIDER_OPENAI_PROD_KEY_MAIN}", "sk-literal-secret-in-file", 1
        ).replace("env: AIPK_PROVIDER_OPENAI_PROD_KEY_MAIN", "sk-literal-secret-in-file", 1),
        "providers[1].api_keys[0].api_key: must be {env: NAME} or {file: PATH}, never the secret",
    ),
    "bad provider settings": (
        lambda text: text.replace("organization: org-acme", "organisation: org-acme", 1),
        "providers[1].settings.organisation: Extra inputs are not permitted",
    ),
}


@pytest.mark.parametrize("breakage", BROKEN, ids=list(BROKEN))
def test_it_refuses_a_broken_file_naming_the_path_and_changes_nothing(
    seeded, environment, tmp_path, breakage
):
    original = export()
    # a change the file also asks for: refused with the rest
    Tenant.objects.filter(slug="globex").update(default_tpm=1)
    before = export()
    events = AuditEvent.objects.count()
    edit, message = BROKEN[breakage]
    broken = edit(original)
    assert broken != original

    err = refused("apply", write(tmp_path, broken))

    assert message in err
    assert "sk-literal-secret-in-file" not in err
    assert export() == before
    assert AuditEvent.objects.count() == events


def test_it_rolls_back_everything_when_a_service_refuses_one_change(db, environment, tmp_path):
    provider_create(name="openai-prod", type="openai")
    provider_create(name="anthropic", type="anthropic")
    text = """
version: 1
tenants:
- slug: initech
  name: Initech
  allowed_providers: [anthropic]
routes:
- alias: chat
  tenant: initech
  candidates:
  - {provider: anthropic, model: claude-haiku}
  - {provider: openai-prod, model: gpt-4o}
"""
    err = refused("apply", write(tmp_path, text))

    assert "routes[0]: candidates.1.provider: 'openai-prod' is not allowed for this tenant" in err
    assert not Tenant.objects.filter(slug="initech").exists()
    assert not ModelRoute.objects.exists()


def test_it_reads_secrets_from_files(db, tmp_path):
    secret_file = tmp_path / "openai_key"
    # container secrets usually end with a newline
    secret_file.write_text("sk-from-a-secret-file-7777\n")
    text = f"""
version: 1
providers:
- name: openai-prod
  type: openai
  api_keys:
  - label: main
    api_key: {{file: {secret_file}}}
"""
    path = write(tmp_path, text)

    out, _ = run("apply", path)

    assert "+ create api key openai-prod/main" in out
    assert "sk-from-a-secret-file-7777" not in out
    key = ApiKey.objects.get(label="main")
    assert (key.secret, key.last4) == ("sk-from-a-secret-file-7777", "7777")
    assert run("apply", path)[0].splitlines()[-1] == "no changes"
    secret_file.write_text("sk-rotated-in-the-file-8888")
    assert "~ update api key openai-prod/main secret: (changed)" in run("apply", path)[0]
    assert ApiKey.objects.get(label="main").secret == "sk-rotated-in-the-file-8888"


def test_it_writes_nothing_on_a_dry_run(seeded, environment, tmp_path):
    path = write(tmp_path, export())
    empty_the_database()

    with CaptureQueriesContext(connection) as queries:
        out, err = run("apply", path, "--dry-run")

    assert "+ create provider openai-prod (openai)" in out
    assert "+ create virtual key acme/ci (its secret is printed once)" in out
    assert re.search(r"dry run: \d+ change\(s\) not made", out)
    assert err == ""
    assert not [q for q in queries if re.match(r"\s*(INSERT|UPDATE|DELETE)", q["sql"])]
    assert not Provider.objects.exists() and not Tenant.objects.exists()


def test_it_reports_what_the_file_leaves_out_and_removes_it_only_with_prune(
    seeded, environment, tmp_path
):
    document = yaml.safe_load(export())
    openai = next(p for p in document["providers"] if p["name"] == "openai-prod")
    openai["api_keys"] = openai["api_keys"][:1]
    acme = next(t for t in document["tenants"] if t["slug"] == "acme")
    acme["keys"] = [k for k in acme["keys"] if k["name"] != "app"]
    document["routes"] = [r for r in document["routes"] if r["alias"] != "fast"]
    document["prices"] = document["prices"][:1]
    document["tenants"] = [acme]
    path = write(tmp_path, yaml.safe_dump(document))

    out, _ = run("apply", path)

    assert "  api key openai-prod/backup is absent from the file: kept (--prune)" in out
    assert "  virtual key acme/app is absent from the file: kept (--prune)" in out
    assert "  route fast (tenant acme) is absent from the file: kept (--prune)" in out
    assert "  price anthropic/claude-haiku is absent from the file: kept (--prune)" in out
    assert "  tenant globex is absent from the file: kept (never deleted)" in out
    assert out.splitlines()[-1] == "no changes"

    out, _ = run("apply", path, "--prune")

    assert "- delete api key openai-prod/backup (retired)" in out
    assert "- delete virtual key acme/app (revoked)" in out
    assert "- delete route fast (tenant acme)" in out
    assert "- delete price anthropic/claude-haiku" in out
    assert ApiKey.objects.get(label="backup").state == ApiKey.State.RETIRED
    assert VirtualKey.objects.get(tenant__slug="acme", name="app").revoked_at is not None
    assert not ModelRoute.objects.filter(alias="fast").exists()
    assert not Pricing.objects.filter(model="claude-haiku").exists()
    assert Tenant.objects.filter(slug="globex").exists()
    assert run("apply", path, "--prune")[0].splitlines()[-1] == "no changes"


class Reminders:
    """A section another feature could add (alert settings, say): export and apply
    reach it through the registry alone."""

    key = "reminders"
    order = 90
    schema = {"type": "array", "items": {"type": "string"}}
    applied: list[str] = []

    def export(self):
        return ["renew the certificate"]

    def plan(self, value, context: PlanContext):
        if value is None:
            return []
        return [
            Change(
                "+",
                f"create reminder {item}",
                f"reminders[{n}]",
                lambda i=item: self.applied.append(i),
            )
            for n, item in enumerate(value)
        ]


@pytest.fixture
def reminders():
    section = Reminders()
    config_sections.register_section(section)
    yield section
    config_sections._sections.pop("reminders")


def test_it_takes_new_sections_from_the_registry(db, tmp_path, reminders):
    assert yaml.safe_load(export())["reminders"] == ["renew the certificate"]

    out, _ = run("apply", write(tmp_path, "version: 1\nreminders: [water the plants]\n"))

    assert out.splitlines() == ["+ create reminder water the plants"]
    assert reminders.applied == ["water the plants"]
    err = refused("apply", write(tmp_path, "version: 1\nreminders: [7]\n"))
    assert "reminders[0]: 7 is not of type 'string'" in err


def test_it_applies_the_example_in_the_documentation(db, monkeypatch, tmp_path):
    docs = (Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", docs, re.S).group(1)
    secret_file = tmp_path / "openai_backup"
    secret_file.write_text("sk-backup-from-a-file-1234\n")
    example = example.replace("/run/secrets/openai_backup", str(secret_file))
    monkeypatch.setenv("AIPK_PROVIDER_OPENAI_PROD_OAUTH_CLIENT_SECRET", OAUTH_CLIENT_SECRET)
    monkeypatch.setenv("AIPK_PROVIDER_OPENAI_PROD_KEY_MAIN", OPENAI_MAIN)
    monkeypatch.setenv("AIPK_PROVIDER_ANTHROPIC_KEY_PRIMARY", ANTHROPIC_KEY)
    path = write(tmp_path, example)

    out, err = run("apply", path)

    assert "+ create route fast (tenant acme)" in out
    assert "new virtual key acme/ci: " in err
    assert run("apply", path)[0].splitlines()[-1] == "no changes"


def test_it_keeps_a_global_route_and_a_tenant_route_of_one_alias_apart(
    seeded, environment, tmp_path
):
    route_create(
        tenant=Tenant.objects.get(slug="acme"),
        alias="chat",
        candidates=[{"provider": "anthropic", "model": "claude-haiku"}],
        actor=None,
    )
    document = yaml.safe_load(export())
    acme_chat = next(r for r in document["routes"] if r == {**r, "alias": "chat", "tenant": "acme"})
    acme_chat["strategy"] = "lowest_latency"

    out, _ = run("apply", write(tmp_path, yaml.safe_dump(document)))

    assert [line for line in out.splitlines() if line.startswith("~")] == [
        "~ update route chat (tenant acme) strategy: 'failover' -> 'lowest_latency'"
    ]
    assert ModelRoute.objects.get(alias="chat", tenant__isnull=True).strategy == "failover"
    assert ModelRoute.objects.get(alias="chat", tenant__slug="acme").strategy == "lowest_latency"


def test_it_does_not_create_a_key_that_has_already_expired(seeded, environment, tmp_path):
    acme = Tenant.objects.get(slug="acme")
    key = VirtualKey.objects.get(tenant=acme, name="app")
    VirtualKey.objects.filter(pk=key.pk).update(expires_at="2020-01-01T00:00:00Z")
    path = write(tmp_path, export())
    key.delete()

    out, err = run("apply", path)

    assert "! virtual key acme/app expired at 2020-01-01 00:00:00+00:00: not created" in out
    assert not VirtualKey.objects.filter(tenant=acme, name="app").exists()
    assert err == ""


def test_it_exits_non_zero_from_the_command_line(tmp_path):
    """The exit status a deployment script sees (a real process; the file is refused
    before any database access)."""
    path = write(tmp_path, "version: 1\nroutes: [unclosed\n")
    manage = Path(__file__).resolve().parents[2] / "manage.py"
    environ = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}"}
    environ.pop("REDIS_URL", None)

    done = subprocess.run(
        [sys.executable, str(manage), "aipk_config", "apply", path],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )

    assert done.returncode == 1
    assert "line 3, column 1: expected ',' or ']'" in done.stderr
    assert "nothing was changed" in done.stderr
    assert done.stdout == ""


def test_it_manages_only_the_oldest_of_keys_sharing_a_name(seeded, environment, tmp_path):
    acme = Tenant.objects.get(slug="acme")
    namesake, _ = virtual_key_create(tenant=acme, name="ci", actor=None, rpm=1)
    api_key_add(
        provider=Provider.objects.get(name="openai-prod"), label="main", secret="sk-namesake-4321"
    )
    text = export()
    assert text.count("- name: ci\n") == 2  # acme's oldest and globex's
    assert text.count("- label: main\n") == 1

    out, _ = run("apply", write(tmp_path, text))

    assert f"  virtual key acme/ci ({namesake.prefix}…) shares its name with an older key" in out
    assert "  api key openai-prod/main (…4321) shares its label with an older key" in out
    assert out.splitlines()[-1] == "no changes"
    assert "sk-namesake-4321" not in text + out


def test_it_names_each_secret_variable_once_even_when_names_collide(db):
    spaced = provider_create(name="team-a", type="openai")
    underscored = provider_create(name="team_a", type="openai")
    api_key_add(provider=spaced, label="prod key", secret="sk-collide-0001")
    api_key_add(provider=spaced, label="prod-key", secret="sk-collide-0002")
    api_key_add(provider=underscored, label="prod_key", secret="sk-collide-0003")

    document = yaml.safe_load(export())

    names = [k["api_key"]["env"] for p in document["providers"] for k in p["api_keys"]]
    assert names == [
        "AIPK_PROVIDER_TEAM_A_KEY_PROD_KEY",
        "AIPK_PROVIDER_TEAM_A_KEY_PROD_KEY_2",
        "AIPK_PROVIDER_TEAM_A_KEY_PROD_KEY_3",
    ]


def test_it_gives_a_refused_key_a_fresh_start_when_the_file_changes_its_secret(
    seeded, environment, tmp_path, monkeypatch
):
    path = write(tmp_path, export())
    main = ApiKey.objects.get(label="main")
    api_key_set_state(key=main, state=ApiKey.State.INVALID, reason="401 from the provider")
    assert run("apply", path)[0].splitlines()[-1] == "no changes"  # same secret: left as is
    monkeypatch.setenv("AIPK_PROVIDER_OPENAI_PROD_KEY_MAIN", "sk-new-secret-after-401-5555")

    run("apply", path)

    main.refresh_from_db()
    assert (main.state, main.last4, main.failure_count) == ("active", "5555", 0)
    event = AuditEvent.objects.filter(action="api_key.replace_secret").get()
    assert event.changes == {"label": "main", "last4": ["0001", "5555"]}
