"""Reload the bundled price table (tenants_app/pricing_table.json) into Pricing rows."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from tenants_app.services.pricing import PRICING_TABLE_PATH, pricing_load_bundled


class Command(BaseCommand):
    help = (
        "Create or update the bundled per-provider-type prices. Rows set by hand "
        "(source manual) are never overwritten."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--file",
            default=str(PRICING_TABLE_PATH),
            help="a price table in the same JSON shape (default: the bundled one)",
        )

    def handle(self, *args, **options):
        counts = pricing_load_bundled(options["file"])
        self.stdout.write(
            "prices: {created} created, {updated} updated, {unchanged} unchanged, "
            "{kept_manual} manual rows kept".format(**counts)
        )
