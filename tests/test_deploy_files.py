"""The container and Kubernetes files pass the validators that run on this machine.

compose.yaml: Debian's docker-compose (`docker-compose -f compose.yaml config` resolves and
checks the file against the compose schema without a daemon; `make test` installs it via
scripts/ensure-deploy-validators). deploy/kubernetes/: kubernetes-validate, offline, strict
(unknown fields refused) against its bundled schemas. Each validator is shown to refuse a
deliberately broken copy, so a pass means something. Then what the validators cannot know:
the topology docs/DEPLOY.md promises is the one the files describe.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dockerfile
import pytest
import yaml

from tests.deploy_commands import topology_commands

PROJECT = Path(__file__).resolve().parents[1]
KUBERNETES = PROJECT / "deploy" / "kubernetes"
MANIFESTS = sorted(KUBERNETES.rglob("*.yaml"))
DOCKER_COMPOSE = os.environ.get("AIPK_DOCKER_COMPOSE", "/usr/bin/docker-compose")
KUBERNETES_VALIDATE = Path(sys.executable).with_name("kubernetes-validate")


def compose_config(path: Path) -> subprocess.CompletedProcess[str]:
    if not os.access(DOCKER_COMPOSE, os.X_OK):
        pytest.fail(f"{DOCKER_COMPOSE} is missing: run scripts/ensure-deploy-validators")
    # interpolation reads the environment: only what the file's defaults need
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(path.parent)}
    return subprocess.run(
        [DOCKER_COMPOSE, "-f", str(path), "--project-directory", str(PROJECT), "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def kubernetes_validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "--quiet", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resources() -> dict[tuple[str, str], dict]:
    return {
        (doc["kind"], doc["metadata"]["name"]): doc for path in MANIFESTS for doc in documents(path)
    }


# -- the validators ---------------------------------------------------------------------


def test_it_validates_compose_yaml_with_docker_compose():
    done = compose_config(PROJECT / "compose.yaml")
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert set(resolved["services"]) == {"migrate", "web", "worker", "beat", "postgres", "redis"}


def test_it_refuses_a_broken_compose_file(tmp_path):
    broken = tmp_path / "compose.yaml"
    text = (PROJECT / "compose.yaml").read_text()
    broken.write_text(text.replace("stop_grace_period: 45s", "stop_grace_periods: 45s"))
    done = compose_config(broken)
    assert done.returncode != 0
    assert "stop_grace_periods" in done.stderr


def test_it_validates_every_kubernetes_manifest():
    assert len(MANIFESTS) >= 7
    done = kubernetes_validate(*MANIFESTS)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("before", "after", "named"),
    [
        # a field that does not exist (strict mode)
        ("terminationGracePeriodSeconds: 45", "terminationGracePeriod: 45", "terminationGrace"),
        # a wrong type
        ("replicas: 2", 'replicas: "two"', "two"),
    ],
)
def test_it_refuses_a_broken_kubernetes_manifest(tmp_path, before, after, named):
    source = (KUBERNETES / "30-web.yaml").read_text()
    assert before in source
    broken = tmp_path / "30-web.yaml"
    broken.write_text(source.replace(before, after))
    done = kubernetes_validate(broken)
    assert done.returncode != 0
    assert named in done.stdout + done.stderr


# -- what the validators cannot know -----------------------------------------------------


def test_the_compose_topology_is_the_documented_one():
    services = yaml.safe_load(compose_config(PROJECT / "compose.yaml").stdout)["services"]
    web, worker, beat, migrate = (services[n] for n in ("web", "worker", "beat", "migrate"))
    assert web["command"] == ["python", "manage.py", "serve"]
    assert web["environment"]["WEB_CONCURRENCY"] == "2"
    assert worker["command"][:4] == ["celery", "-A", "aipk_site", "worker"]
    assert beat["command"][:6] == ["celery", "-A", "aipk_site", "beat", "-S", "django"]
    assert migrate["command"] == ["python", "manage.py", "migrate", "--noinput"]
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
        # secrets come as files, never as values in the environment
        env = services[name]["environment"]
        assert "DJANGO_SECRET_KEY" not in env and "FERNET_KEYS" not in env
        assert env["DJANGO_SECRET_KEY_FILE"].startswith("/run/secrets/")
        assert env["REDIS_URL"].startswith("redis://redis:")


def test_compose_and_kubernetes_run_the_commands_deploy_md_lists():
    commands = topology_commands()
    services = yaml.safe_load(compose_config(PROJECT / "compose.yaml").stdout)["services"]
    found = resources()
    pods = {
        role: found[(kind, name)]["spec"]["template"]["spec"]["containers"][0]
        for role, kind, name in [
            ("migrate", "Job", "aipk-migrate"),
            ("serve", "Deployment", "aipk-web"),
            ("worker", "Deployment", "aipk-worker"),
            ("beat", "Deployment", "aipk-beat"),
        ]
    }
    for role, service in [("migrate", "migrate"), ("serve", "web"), ("worker", "worker")]:
        assert services[service]["command"] == commands[role].argv, role
    assert services["beat"]["command"] == commands["beat"].argv
    for role, container in pods.items():
        assert container["command"] == commands[role].argv, role
    web_env = {e["name"]: e["value"] for e in pods["serve"]["env"]}
    for name, value in commands["serve"].env.items():
        assert services["web"]["environment"][name] == value
        assert web_env[name] == value


def test_beat_runs_once_and_web_keeps_serving_through_disruptions():
    found = resources()
    beat = found[("Deployment", "aipk-beat")]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"
    assert found[("PodDisruptionBudget", "aipk-web")]["spec"]["minAvailable"] >= 1
    web = found[("Deployment", "aipk-web")]["spec"]["template"]["spec"]
    container = web["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["exec"]["command"] == ["python", "scripts/alive.py"]
    # past SHUTDOWN_DRAIN_SECONDS + 5 s, or streams are cut during a rollout
    assert web["terminationGracePeriodSeconds"] > 30 + 5
    job = found[("Job", "aipk-migrate")]["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == ["python", "manage.py", "migrate", "--noinput"]


def test_every_container_has_resource_requests_and_runs_as_non_root():
    for (kind, name), doc in resources().items():
        if kind not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["containers"]:
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name


def dockerfile_instructions(path: Path = PROJECT / "Dockerfile") -> list[dockerfile.Command]:
    # the official BuildKit parser (the `dockerfile` package wraps it)
    return list(dockerfile.parse_file(str(path)))


def test_it_parses_the_dockerfile_with_buildkits_parser_and_refuses_a_broken_one(tmp_path):
    assert [c.cmd for c in dockerfile_instructions()][0] == "FROM"
    broken = tmp_path / "Dockerfile"
    broken.write_text((PROJECT / "Dockerfile").read_text() + "RUN <<EOF\necho never ends\n")
    with pytest.raises(dockerfile.GoParseError, match="heredoc"):
        dockerfile_instructions(broken)


def test_the_image_runs_serve_as_a_non_root_user_without_dev_dependencies():
    instructions = dockerfile_instructions()
    by_name: dict[str, list[dockerfile.Command]] = {}
    for instruction in instructions:
        by_name.setdefault(instruction.cmd, []).append(instruction)
    assert by_name["FROM"][0].value == ("python:3.11-slim",)
    assert by_name["USER"][-1].value[0].split(":")[0] not in ("root", "0")
    assert by_name["CMD"][-1].json and by_name["CMD"][-1].value == ("python", "manage.py", "serve")
    healthcheck = by_name["HEALTHCHECK"][-1]
    assert healthcheck.value == ("CMD", "python", "scripts/alive.py")
    runs = " ".join(v for run in by_name["RUN"] for v in run.value)
    assert "pip install -r requirements.txt" in runs and "requirements-dev" not in runs
    assert "collectstatic" in runs
    # ENV bakes values into the image: never a secret
    names = {value for env in by_name["ENV"] for value in env.value[::2]}
    assert not names & {"DJANGO_SECRET_KEY", "FERNET_KEYS", "DATABASE_URL", "REDIS_URL"}


def test_the_images_collectstatic_step_needs_no_database_and_no_real_secret():
    # the build step's environment: DEBUG off (ENV), placeholders, nothing else
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "aipk_site.settings",
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": "collectstatic-only",
        "FERNET_KEYS": "collectstatic-only",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--dry-run", "-v", "1"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "static file" in done.stdout


def test_no_secret_value_ships_in_the_image_or_the_manifests():
    ignored = (PROJECT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "secrets", "db.sqlite3"} <= set(ignored)
    # the only Secret is the example, out of `kubectl apply -f deploy/kubernetes/`'s reach
    secrets = [path for path in MANIFESTS if any(d["kind"] == "Secret" for d in documents(path))]
    assert [p.relative_to(KUBERNETES).as_posix() for p in secrets] == ["secret-example/secret.yaml"]
    values = documents(secrets[0])[0]["stringData"]
    assert all("REPLACE-ME" in v or v == "" or "example" in v for v in values.values()), values


def test_the_liveness_check_counts_any_http_answer_as_alive(gateway_server, transactional_db):
    # gateway_server answers /health (200, or 503 with a degraded provider: alive either way)
    port = gateway_server.url.rsplit(":", 1)[1]
    alive = subprocess.run(
        [sys.executable, "scripts/alive.py"],
        cwd=PROJECT,
        env={**os.environ, "PORT": port},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert alive.returncode == 0, alive.stderr


def test_the_liveness_check_fails_when_nothing_answers():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        dead = subprocess.run(
            [sys.executable, "scripts/alive.py"],
            cwd=PROJECT,
            env={**os.environ, "PORT": str(port), "ALIVE_TIMEOUT": "2"},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert dead.returncode == 1
    assert "not alive" in dead.stderr
