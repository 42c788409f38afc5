"""The process commands of docs/DEPLOY.md's ``<!-- topology-commands -->`` block, read by
the tests that follow DEPLOY.md literally (test_production_topology.py starts them,
test_deploy_files.py checks compose.yaml and the Kubernetes manifests run the same)."""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class Command:
    env: dict[str, str]
    argv: list[str]

    @property
    def role(self) -> str:
        words = self.argv
        if words[:2] == ["python", "manage.py"]:
            return words[2]  # migrate, serve
        if words[0] == "celery":
            return words[words.index("-A") + 2]  # worker, beat
        raise AssertionError(f"an unknown process in docs/DEPLOY.md: {shlex.join(words)}")

    def executable_argv(self) -> list[str]:
        # DEPLOY.md says `python` and `celery`: here, this virtualenv's
        program = sys.executable if self.argv[0] == "python" else str(BIN / self.argv[0])
        return [program, *self.argv[1:]]


def topology_commands() -> dict[str, Command]:
    text = (PROJECT / "docs" / "DEPLOY.md").read_text()
    found = re.search(r"<!-- topology-commands -->\n```\n(.*?)```", text, re.S)
    assert found, "docs/DEPLOY.md has no <!-- topology-commands --> block"
    commands = {}
    for line in found.group(1).splitlines():
        words = shlex.split(line)
        env = {}
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        command = Command(env, words)
        commands[command.role] = command
    return commands
