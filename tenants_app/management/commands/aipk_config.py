"""Configuration as code: ``aipk_config export [--output FILE]`` and
``aipk_config apply FILE [--dry-run] [--prune]`` (docs/CONFIG.md)."""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from tenants_app.services.config_as_code import ConfigRefused, config_apply, config_export


class Command(BaseCommand):
    help = (
        "Export providers, credentials' metadata, tenants, virtual keys' limits, routes, "
        "prices and alert channels as YAML (secrets as references), or make the database "
        "match such a file."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        export = actions.add_parser("export", help="write the configuration as YAML")
        export.add_argument("--output", "-o", help="a file to write (default: stdout)")
        apply = actions.add_parser("apply", help="make the database match a YAML file")
        apply.add_argument("file", help="the YAML file ('-' reads stdin)")
        apply.add_argument(
            "--dry-run", action="store_true", help="print the changes and write nothing"
        )
        apply.add_argument(
            "--prune",
            action="store_true",
            help="also remove what the file leaves out (API keys retired, virtual keys "
            "revoked, routes, manual prices and alert channels deleted); tenants and "
            "providers are kept",
        )

    def handle(self, *args, **options):
        if options["action"] == "export":
            text = config_export()
            if options["output"]:
                Path(options["output"]).write_text(text, encoding="utf-8")
            else:
                self.stdout.write(text, ending="")
            return
        try:
            if options["file"] == "-":
                text = sys.stdin.read()
            else:
                text = Path(options["file"]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {options['file']}: {exc}") from None
        try:
            result = config_apply(text=text, dry_run=options["dry_run"], prune=options["prune"])
        except ConfigRefused as refused:
            for error in refused.errors:
                self.stderr.write(error)
            raise CommandError(str(refused)) from None
        for line in result.lines:
            self.stdout.write(line)
        if options["dry_run"] and result.changes:
            self.stdout.write(f"dry run: {result.changes} change(s) not made")
        # a new virtual key's secret (or a new webhook channel's signing secret) exists
        # only here: stderr, once, never in the diff
        for notice in result.notices:
            self.stderr.write(notice)
