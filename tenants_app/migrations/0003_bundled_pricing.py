# Seeds Pricing with the bundled table (tenants_app/pricing_table.json) as
# provider-type rows (provider null, source "bundled"). Self-contained on purpose:
# a migration must not depend on service code that may change later.
# `manage.py load_pricing` reloads the table after an upgrade.

import json
from decimal import Decimal
from pathlib import Path

from django.db import migrations

TABLE = Path(__file__).resolve().parents[1] / "pricing_table.json"


def load_prices(apps, schema_editor):
    Pricing = apps.get_model("tenants_app", "Pricing")
    prices = json.loads(TABLE.read_text(encoding="utf-8"))["prices"]
    for provider_type, models in prices.items():
        for model, entry in models.items():
            existing = Pricing.objects.filter(
                provider__isnull=True, provider_type=provider_type, model=model
            ).first()
            if existing is not None and existing.source != "bundled":
                continue  # an operator's own price stays
            Pricing.objects.update_or_create(
                provider=None,
                provider_type=provider_type,
                model=model,
                defaults={
                    "input_per_million": Decimal(entry["input"]),
                    "output_per_million": Decimal(entry["output"]),
                    "source": "bundled",
                },
            )


def delete_prices(apps, schema_editor):
    Pricing = apps.get_model("tenants_app", "Pricing")
    Pricing.objects.filter(provider__isnull=True, source="bundled").delete()


class Migration(migrations.Migration):

    dependencies = [
        ("tenants_app", "0002_tenants_keys_routes_usage"),
    ]

    operations = [
        migrations.RunPython(load_prices, delete_prices),
    ]
