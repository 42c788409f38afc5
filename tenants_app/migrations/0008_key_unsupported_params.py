# A key's choice for request fields its provider cannot take: refuse (a 400, the
# behaviour every existing key keeps) or drop and name them in x-aipk-dropped-params.
# And the end-user id a request carried, on its usage row (attribution).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tenants_app", "0007_stored_responses"),
    ]

    operations = [
        migrations.AddField(
            model_name="virtualkey",
            name="unsupported_params",
            field=models.CharField(
                choices=[("refuse", "Refuse"), ("drop", "Drop")], default="refuse", max_length=8
            ),
        ),
        migrations.AddField(
            model_name="usagerecord",
            name="end_user",
            field=models.CharField(blank=True, default="", max_length=256),
        ),
    ]
