# Usage rows carry the parts of their token counts billed at their own rates (cache
# reads, cache writes, reasoning), and prices the cache rates. The bundled rows get
# their cache rates from tenants_app/pricing_table.json; self-contained on purpose,
# like 0003: a migration must not depend on service code that may change later.

import json
from decimal import Decimal
from pathlib import Path

from django.db import migrations, models

TABLE = Path(__file__).resolve().parents[1] / "pricing_table.json"


def load_cache_rates(apps, schema_editor):
    Pricing = apps.get_model("tenants_app", "Pricing")
    prices = json.loads(TABLE.read_text(encoding="utf-8"))["prices"]
    for provider_type, models_ in prices.items():
        for model, entry in models_.items():
            rates = {
                column: Decimal(entry[key])
                for column, key in (
                    ("cached_input_per_million", "cached_input"),
                    ("cache_write_per_million", "cache_write"),
                )
                if entry.get(key) is not None
            }
            if rates:  # an operator's own (manual) row stays as it is
                Pricing.objects.filter(
                    provider__isnull=True,
                    provider_type=provider_type,
                    model=model,
                    source="bundled",
                ).update(**rates)


class Migration(migrations.Migration):
    dependencies = [
        ("tenants_app", "0005_retention_schedule"),
    ]

    operations = [
        migrations.AddField(
            model_name="pricing",
            name="cache_write_per_million",
            field=models.DecimalField(blank=True, decimal_places=6, max_digits=12, null=True),
        ),
        migrations.AddField(
            model_name="pricing",
            name="cached_input_per_million",
            field=models.DecimalField(blank=True, decimal_places=6, max_digits=12, null=True),
        ),
        migrations.AddField(
            model_name="usagerecord",
            name="cache_write_tokens",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="usagerecord",
            name="cached_tokens",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="usagerecord",
            name="reasoning_tokens",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.RunPython(load_cache_rates, migrations.RunPython.noop),
    ]
