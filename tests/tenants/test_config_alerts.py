"""The ``alerts`` section of configuration as code (docs/CONFIG.md, "Alert channels").

Channels of two tenants (one name in both) and of the organisation are made through
the alert services, exported, applied onto an empty database and exported again; a
webhook or Slack target (a URL with a token in it) and a signing secret never appear in
the file or the command's output; every broken entry is refused naming its path and
changes nothing; a webhook channel apply created delivers an alert its receiver can
verify with the signing secret apply printed.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re
import time
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from aipk_site.infra import config_sections
from aipk_site.infra.config_sections import Change, PlanContext
from aipk_site.infra.errors import InvalidRequest
from tenants_app.models import AlertChannel, AlertDelivery, AuditEvent, Tenant
from tenants_app.services.alerts import (
    alert_channel_create,
    alert_channel_test,
    alert_channel_update,
)
from tenants_app.services.tenants import tenant_create
from tests.alerts.receiver import start_receiver

ACME_HOOK = "https://hooks.example.com/acme/T0K3N-acme-secret-0001"
GLOBEX_SLACK = "https://hooks.slack.test/services/T000/B000/globex-secret-0002"
ORG_HOOK = "https://noc.example.com/hook/org-secret-0003"
ENVIRONMENT = {
    "AIPK_ALERT_ACME_OPS_HOOK_TARGET": ACME_HOOK,
    "AIPK_ALERT_GLOBEX_OPS_HOOK_TARGET": GLOBEX_SLACK,
    "AIPK_ALERT_ORG_NOC_TARGET": ORG_HOOK,
}
TARGETS = (ACME_HOOK, GLOBEX_SLACK, ORG_HOOK)


@pytest.fixture
def environment(monkeypatch):
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def seeded(db) -> dict[str, str]:
    """Acme: a webhook subscribed to budget alerts and an email channel; Globex: a
    switched-off Slack channel of the same name as Acme's webhook; the organisation: a
    webhook. Returns the webhooks' signing secrets."""
    acme = tenant_create(name="Acme", slug="acme", actor=None)
    globex = tenant_create(name="Globex", slug="globex", actor=None)
    signing = {}
    _, signing["acme/ops hook"] = alert_channel_create(
        tenant=acme, name="ops hook", kind="webhook", target=ACME_HOOK, events=["budget.threshold"]
    )
    alert_channel_create(
        tenant=acme, name="finance", kind="email", target="cfo@acme.test,ops@acme.test"
    )
    alert_channel_create(
        tenant=globex, name="ops hook", kind="slack", target=GLOBEX_SLACK, enabled=False
    )
    _, signing["organisation/noc"] = alert_channel_create(
        tenant=None, name="noc", kind="webhook", target=ORG_HOOK
    )
    return signing


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("aipk_config", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def export() -> str:
    return run("export")[0]


def refused(*args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="nothing was changed"):
        call_command("aipk_config", *args, stdout=out, stderr=err)
    assert out.getvalue() == ""
    return err.getvalue()


def write(tmp_path, text: str) -> str:
    path = tmp_path / "aipk.yaml"
    path.write_text(text)
    return str(path)


def writes_in(queries) -> list[str]:
    return [q["sql"] for q in queries if re.match(r"\s*(INSERT|UPDATE|DELETE)", q["sql"])]


def channel(scope: str | None, name: str) -> AlertChannel:
    return AlertChannel.objects.get(tenant__slug=scope, name=name)


def test_it_exports_channels_with_targets_as_references_and_no_signing_secret(seeded):
    text = export()

    assert yaml.safe_load(text)["alerts"] == [
        {"name": "noc", "kind": "webhook", "target": {"env": "AIPK_ALERT_ORG_NOC_TARGET"}},
        {
            "name": "finance",
            "tenant": "acme",
            "kind": "email",
            "target": "cfo@acme.test, ops@acme.test",
        },
        {
            "name": "ops hook",
            "tenant": "acme",
            "kind": "webhook",
            "target": {"env": "AIPK_ALERT_ACME_OPS_HOOK_TARGET"},
            "events": ["budget.threshold"],
        },
        {
            "name": "ops hook",
            "tenant": "globex",
            "kind": "slack",
            "target": {"env": "AIPK_ALERT_GLOBEX_OPS_HOOK_TARGET"},
            "enabled": False,
        },
    ]
    for secret in (*TARGETS, *seeded.values()):
        assert secret not in text
    for stored in AlertChannel.objects.exclude(secret_last4=""):
        assert stored.signing_secret not in text


def test_it_names_each_target_variable_once_even_when_names_collide(seeded):
    acme = Tenant.objects.get(slug="acme")
    alert_channel_create(tenant=acme, name="ops-hook", kind="slack", target=GLOBEX_SLACK)

    targets = [entry["target"] for entry in yaml.safe_load(export())["alerts"]]

    assert {"env": "AIPK_ALERT_ACME_OPS_HOOK_TARGET"} in targets
    assert {"env": "AIPK_ALERT_ACME_OPS_HOOK_TARGET_2"} in targets


def test_it_round_trips_onto_an_empty_database(seeded, environment, tmp_path):
    first = export()
    path = write(tmp_path, first)
    AlertChannel.objects.all().delete()
    Tenant.objects.all().delete()
    seeded_events = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()

    out, err = run("apply", path)

    assert "+ create tenant acme" in out
    assert (
        "+ create alert channel ops hook (tenant acme) (webhook) "
        "(its signing secret is printed once)" in out
    )
    assert "+ create alert channel ops hook (tenant globex) (slack)" in out
    assert "+ create alert channel noc (organisation) (webhook)" in out
    assert export() == first
    assert channel("acme", "ops hook").target == ACME_HOOK
    assert channel("globex", "ops hook").target == GLOBEX_SLACK
    assert channel(None, "noc").target == ORG_HOOK
    # each new webhook's signing secret is printed once, on stderr, and it is the channel's
    printed = dict(re.findall(r"new alert channel (.+?) signing secret: (\S+)", err))
    assert set(printed) == {"acme/ops hook", "organisation/noc"}
    assert printed["acme/ops hook"] == channel("acme", "ops hook").signing_secret
    assert printed["organisation/noc"] == channel(None, "noc").signing_secret
    # through the services: audited, and the audit shows no target nor secret
    created = AuditEvent.objects.filter(action="alert_channel.create", id__gt=seeded_events)
    assert created.count() == 4
    audit_log = str(list(created.values_list("changes", flat=True)))
    for secret in (*TARGETS, *printed.values()):
        assert secret not in out
        assert secret not in audit_log


def test_it_changes_nothing_on_a_second_apply(seeded, environment, tmp_path):
    path = write(tmp_path, export())
    events = AuditEvent.objects.count()
    stamps = sorted(AlertChannel.objects.values_list("updated_at", flat=True))

    with CaptureQueriesContext(connection) as queries:
        out, err = run("apply", path)

    assert out.splitlines()[-1] == "no changes"
    assert not [line for line in out.splitlines() if line[:1] in "+~-"]
    assert err == ""
    assert writes_in(queries) == []
    assert AuditEvent.objects.count() == events
    assert sorted(AlertChannel.objects.values_list("updated_at", flat=True)) == stamps


def test_it_brings_drifted_channels_back_to_the_file_one_tenant_at_a_time(
    seeded, environment, tmp_path, monkeypatch
):
    path = write(tmp_path, export())
    alert_channel_update(channel=channel("acme", "ops hook"), events=[], enabled=False)
    alert_channel_update(channel=channel("acme", "finance"), target="cfo@acme.test")
    monkeypatch.setenv("AIPK_ALERT_GLOBEX_OPS_HOOK_TARGET", GLOBEX_SLACK + "-rotated")
    acme_hook = channel("acme", "ops hook").target

    out, err = run("apply", path)

    assert "~ update alert channel ops hook (tenant acme) events: [] -> ['budget.threshold']" in out
    assert "~ update alert channel ops hook (tenant acme) enabled: false -> true" in out
    assert (
        "~ update alert channel finance (tenant acme) target: "
        "'cfo@acme.test' -> 'cfo@acme.test, ops@acme.test'" in out
    )
    assert "~ update alert channel ops hook (tenant globex) target: (changed)" in out
    assert GLOBEX_SLACK not in out + err
    hook = channel("acme", "ops hook")
    assert (hook.events, hook.enabled, hook.target) == (["budget.threshold"], True, acme_hook)
    assert channel("globex", "ops hook").target == GLOBEX_SLACK + "-rotated"
    # the same name in another tenant is another channel: Acme's target was not touched
    assert "target: (changed)" not in "".join(line for line in out.splitlines() if "acme" in line)
    assert run("apply", path)[0].splitlines()[-1] == "no changes"


def _edit(mutate):
    def edit(text: str) -> str:
        document = yaml.safe_load(text)
        mutate(document["alerts"])
        return yaml.safe_dump(document, sort_keys=False)

    return edit


def _set(index: int, **fields):
    return _edit(lambda alerts: alerts[index].update(fields))


BROKEN = {
    "unknown kind": (_set(1, kind="pager"), "alerts[1].kind: 'pager' is not one of"),
    "unknown event": (
        _set(2, events=["budget.threshold", "budget.exploded"]),
        'alerts[2].events[1]: unknown event kind "budget.exploded"',
    ),
    "bad email": (
        _set(1, target="cfo@acme.test, not-an-address"),
        "alerts[1].target: 'not-an-address' is not an email address",
    ),
    "bad URL": (
        _set(0, target={"env": "AIPK_TEST_NOT_A_URL"}),
        "alerts[0].target: must be an http or https URL",
    ),
    "URL written in the file": (
        _set(0, target="https://noc.example.com/hook/sk-literal-secret-in-file"),
        "alerts[0].target: a webhook URL carries its token: must be {env: NAME} or {file: PATH}",
    ),
    "unknown tenant": (_set(3, tenant="initech"), 'alerts[3].tenant: unknown tenant "initech"'),
    "duplicate channel": (
        _edit(lambda alerts: alerts.append(dict(alerts[2]))),
        "alerts[4].name: duplicate alert channel ops hook (tenant acme)",
    ),
    "missing variable": (
        _set(3, target={"env": "AIPK_TEST_UNSET"}),
        "alerts[3].target: environment variable AIPK_TEST_UNSET is not set",
    ),
    "kind changed": (
        _set(2, kind="slack"),
        "alerts[2].kind: alert channel ops hook (tenant acme) is a webhook channel; "
        "a kind cannot change",
    ),
    "unknown field": (
        _set(1, severity="high"),
        "alerts[1]: Additional properties are not allowed ('severity' was unexpected)",
    ),
    "missing target": (
        _edit(lambda alerts: alerts[1].pop("target")),
        "alerts[1]: 'target' is a required property",
    ),
}


@pytest.mark.parametrize("breakage", BROKEN, ids=list(BROKEN))
def test_it_refuses_a_broken_entry_naming_its_path_and_changes_nothing(
    seeded, environment, tmp_path, monkeypatch, breakage
):
    monkeypatch.setenv("AIPK_TEST_NOT_A_URL", "not a url")
    original = export()
    # a change the file also asks for: refused with the rest
    alert_channel_update(channel=channel("acme", "finance"), enabled=False)
    before = export()
    events = AuditEvent.objects.count()
    edit, message = BROKEN[breakage]
    broken = edit(original)

    err = refused("apply", write(tmp_path, broken))

    assert message in err
    for secret in (*TARGETS, "sk-literal-secret-in-file", "not a url"):
        assert secret not in err
    assert export() == before
    assert AuditEvent.objects.count() == events


def test_it_writes_nothing_on_a_dry_run(seeded, environment, tmp_path):
    path = write(tmp_path, export())
    AlertChannel.objects.all().delete()

    with CaptureQueriesContext(connection) as queries:
        out, err = run("apply", path, "--dry-run")

    assert "+ create alert channel noc (organisation) (webhook)" in out
    assert "+ create alert channel finance (tenant acme) (email)" in out
    assert "dry run: 4 change(s) not made" in out
    assert err == ""  # no channel, so no signing secret
    assert writes_in(queries) == []
    assert not AlertChannel.objects.exists()


def test_it_reports_channels_the_file_leaves_out_and_deletes_them_only_with_prune(
    seeded, environment, tmp_path
):
    document = yaml.safe_load(export())
    document["alerts"] = [
        entry
        for entry in document["alerts"]
        if (entry.get("tenant"), entry["name"]) not in {("globex", "ops hook"), (None, "noc")}
    ]
    path = write(tmp_path, yaml.safe_dump(document))

    out, _ = run("apply", path)

    assert "  alert channel noc (organisation) is absent from the file: kept (--prune)" in out
    assert "  alert channel ops hook (tenant globex) is absent from the file: kept (--prune)" in out
    assert out.splitlines()[-1] == "no changes"
    assert AlertChannel.objects.count() == 4

    out, _ = run("apply", path, "--prune")

    assert "- delete alert channel noc (organisation)" in out
    assert "- delete alert channel ops hook (tenant globex)" in out
    assert set(AlertChannel.objects.values_list("tenant__slug", "name")) == {
        ("acme", "ops hook"),
        ("acme", "finance"),
    }
    assert AuditEvent.objects.filter(action="alert_channel.delete").count() == 2
    assert run("apply", path, "--prune")[0].splitlines()[-1] == "no changes"


class Refusing:
    """A section planned after alerts whose service refuses: everything rolls back."""

    key = "refusing"
    order = 90
    schema = {"type": "boolean"}

    def export(self):
        return False

    def plan(self, value, context: PlanContext):
        def refuse():
            raise InvalidRequest("refused on purpose", param="refusing")

        return [Change("+", "create refusal", "refusing", refuse)] if value else []


@pytest.fixture
def refusing():
    config_sections.register_section(Refusing())
    yield
    config_sections._sections.pop("refusing")


def test_it_prints_no_signing_secret_when_the_apply_rolls_back(
    seeded, environment, tmp_path, refusing
):
    document = yaml.safe_load(export())
    AlertChannel.objects.all().delete()
    document["refusing"] = True

    err = refused("apply", write(tmp_path, yaml.safe_dump(document)))

    assert "refusing: refused on purpose" in err
    assert "signing secret" not in err
    assert not AlertChannel.objects.exists()


def test_it_leaves_the_section_alone_when_the_file_has_none(seeded, tmp_path):
    out, _ = run("apply", write(tmp_path, "version: 1\n"))

    assert out.splitlines() == ["no changes"]
    assert AlertChannel.objects.count() == 4


def test_it_manages_only_the_oldest_of_channels_sharing_a_name(seeded, environment, tmp_path):
    path = write(tmp_path, export())
    acme = Tenant.objects.get(slug="acme")
    alert_channel_create(tenant=acme, name="finance", kind="email", target="late@acme.test")

    out, _ = run("apply", path, "--prune")

    late = AlertChannel.objects.filter(tenant=acme, name="finance").latest("id")
    assert f"  alert channel finance (tenant acme) (id {late.pk}) shares its name" in out
    assert "shares its name with an older channel: not managed by the file" in out
    assert out.splitlines()[-1] == "no changes"
    assert AlertChannel.objects.filter(tenant=acme, name="finance").count() == 2


def test_it_applies_the_alerts_example_in_the_documentation(db, monkeypatch, tmp_path):
    docs = (Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md").read_text()
    example = re.search(r"```yaml\n(alerts:.*?)```", docs, re.S).group(1)
    monkeypatch.setenv("AIPK_ALERT_ORG_NOC_TARGET", ORG_HOOK)
    monkeypatch.setenv("AIPK_ALERT_ACME_OPS_HOOK_TARGET", ACME_HOOK)
    secret_file = tmp_path / "acme_slack"
    secret_file.write_text(GLOBEX_SLACK + "\n")
    example = example.replace("/run/secrets/acme_slack", str(secret_file))
    tenant_create(name="Acme", slug="acme", actor=None)
    path = write(tmp_path, "version: 1\n" + example)

    out, err = run("apply", path)

    assert "+ create alert channel noc (organisation) (webhook)" in out
    assert "new alert channel acme/ops hook signing secret: whsec_" in err
    assert run("apply", path)[0].splitlines()[-1] == "no changes"


@pytest.mark.django_db(transaction=True)
def test_it_creates_a_webhook_that_delivers_an_alert_signed_with_the_printed_secret(
    tmp_path, monkeypatch
):
    from aipk_site.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)
    receiver, server = start_receiver()
    try:
        monkeypatch.setenv("AIPK_ALERT_ACME_OPS_HOOK_TARGET", receiver.url)
        text = """
version: 1
tenants:
- {slug: acme, name: Acme}
alerts:
- name: ops hook
  tenant: acme
  kind: webhook
  target: {env: AIPK_ALERT_ACME_OPS_HOOK_TARGET}
"""
        _, err = run("apply", write(tmp_path, text))
        secret = re.search(r"new alert channel acme/ops hook signing secret: (\S+)", err).group(1)

        delivery = alert_channel_test(channel=channel("acme", "ops hook"))

        assert (delivery.status, len(receiver)) == ("sent", 1)
        got = receiver.received[0]
        parts = dict(item.split("=", 1) for item in got.headers["x-aipk-signature"].split(","))
        expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + got.body, hashlib.sha256)
        assert hmac.compare_digest(expected.hexdigest(), parts["v1"])
        assert abs(time.time() - int(parts["t"])) < 300
        assert got.json()["tenant"] == "acme"
        assert AlertDelivery.objects.get().channel == channel("acme", "ops hook")
    finally:
        server.shutdown()
        server.server_close()
