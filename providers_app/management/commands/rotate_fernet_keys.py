"""``python manage.py rotate_fernet_keys``: re-encrypt every secret with the first FERNET_KEYS
key."""

from django.core.management.base import BaseCommand

from providers_app.services.encryption import reencrypt_all


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the first key in FERNET_KEYS. Put the new key "
        "first (keeping the old ones after it), run this, then remove the old keys."
    )

    def handle(self, *args, **options):
        counts = reencrypt_all()
        for label, count in counts.items():
            self.stdout.write(f"{label}: {count} row(s) re-encrypted")
        self.stdout.write(
            self.style.SUCCESS(f"done: {sum(counts.values())} row(s) with the first key")
        )
