"""The pieces every section of configuration as code shares (docs/CONFIG.md).

``manage.py aipk_config`` reads and writes one YAML document made of top-level
sections (``providers``, ``tenants``, ``routes``, ``prices``, ...). Each section is
owned by the app that owns its models and registers a ``ConfigSection`` here; the
orchestrator (tenants_app/services/config_as_code.py) only walks the registry. This
module sits below both apps so that either may register a section without importing
the other (providers_app never imports tenants_app).

Extension point: another feature (alert settings, for one) adds its section by
calling ``register_section`` from its app's ``ready()`` (or from a module the app
imports at start-up); nothing else changes.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# Keys whose values are secrets: a schema error under one of them never quotes the
# value (jsonschema's messages repeat the offending instance).
SECRET_FIELDS = frozenset({"api_key", "oauth_client_secret"})

# ``{env: NAME}`` or ``{file: /run/secrets/name}``: a file holds references, never values.
SECRET_REFERENCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "env": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "file": {"type": "string", "minLength": 1},
    },
    "additionalProperties": False,
    "minProperties": 1,
    "maxProperties": 1,
}


@dataclass
class Change:
    """One line of the diff, and what applying it does.

    ``sign`` is ``+`` (create), ``~`` (update), ``-`` (delete), ``!`` (a warning: the
    file asks for something apply cannot do, nothing is written) or `` `` (absent from
    the file and kept: ``--prune`` would delete it). ``path`` names the entry in the
    file (``routes[2]``) so a service's refusal at apply time can name it too."""

    sign: str
    text: str
    path: str = ""
    # kept out of repr: the call may hold a secret it is about to store
    action: Callable[[], Any] | None = field(default=None, repr=False)

    @property
    def line(self) -> str:
        return f"{self.sign} {self.text}"

    @property
    def writes(self) -> bool:
        return self.action is not None


@dataclass
class PlanContext:
    """What a section's ``plan`` sees: the whole (schema-valid) document, so it can
    check references into other sections, and where to report problems."""

    document: dict[str, Any]
    prune: bool = False
    actor_label: str = "aipk_config"
    errors: list[str] = field(default_factory=list)
    # lines printed to stderr after a successful apply (a new virtual key's secret)
    notices: list[str] = field(default_factory=list)

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def names_in(self, section: str, key: str) -> set[str]:
        return {
            item[key]
            for item in self.document.get(section) or []
            if isinstance(item, dict) and isinstance(item.get(key), str)
        }


class ConfigSection(Protocol):
    """A top-level key of the configuration document."""

    # the top-level key, e.g. "routes"
    key: str
    # sections are planned and applied in this order (referenced before referencing)
    order: int
    # JSON Schema of the section's value
    schema: dict[str, Any]

    def export(self) -> Any:
        """The section as stored now, in the file's canonical form (never a secret)."""

    def plan(self, value: Any, context: PlanContext) -> list[Change]:
        """The changes that make the database match ``value`` (None: the section is
        absent from the file, which leaves it alone). Reports reference errors on
        ``context``; writes nothing."""


_sections: dict[str, ConfigSection] = {}


def register_section(section: ConfigSection) -> None:
    """Add (or replace, by key) a section of the configuration document."""
    _sections[section.key] = section


def registered_sections() -> list[ConfigSection]:
    return sorted(_sections.values(), key=lambda section: (section.order, section.key))


def env_name(*parts: str) -> str:
    """A predictable environment variable name: AIPK_PROVIDER_OPENAI_PROD_KEY_MAIN."""
    return "_".join(re.sub(r"[^A-Za-z0-9]+", "_", part).strip("_").upper() for part in parts)


def resolve_secret(reference: dict[str, str], path: str, context: PlanContext) -> str | None:
    """The secret a reference points to, or None with an error naming ``path`` (the
    error names the variable or file, never a value)."""
    if "env" in reference:
        value = os.environ.get(reference["env"])
        if not value:
            context.error(path, f"environment variable {reference['env']} is not set")
            return None
        return value.strip()
    try:
        with open(reference["file"], encoding="utf-8") as handle:
            # container secrets usually end with a newline that is no part of the key
            value = handle.read().strip()
    except OSError as exc:
        context.error(path, f"cannot read secret file {reference['file']}: {exc.strerror}")
        return None
    if not value:
        context.error(path, f"secret file {reference['file']} is empty")
        return None
    return value


def secret_matches(stored: str, given: str) -> bool:
    """Whether a stored (decrypted) secret equals the file's, in constant time: an
    unchanged secret is not saved again."""
    return hmac.compare_digest(stored.encode(), given.encode())
