"""``python manage.py rotate_api_key <key id> [--grace-seconds N]``: rotate one provider API key.

The new secret is read from standard input (never from the command line, where
it would land in shell history and process listings).
"""

import sys

from django.core.management.base import BaseCommand, CommandError

from providers_app.models import ApiKey
from providers_app.services.credentials import CredentialError, api_key_rotate


class Command(BaseCommand):
    help = (
        "Add a new secret for a key, test it live, activate it, and retire the old one "
        "after a grace period."
    )

    def add_arguments(self, parser):
        parser.add_argument("key_id", type=int)
        parser.add_argument("--grace-seconds", type=int, default=3600)
        parser.add_argument("--label", default="")

    def handle(self, *args, key_id: int, grace_seconds: int, label: str, **options):
        try:
            key = ApiKey.objects.select_related("provider").get(pk=key_id)
        except ApiKey.DoesNotExist:
            raise CommandError(f"no API key with id {key_id}") from None
        new_secret = sys.stdin.readline().strip()
        if not new_secret:
            raise CommandError("give the new secret on standard input")
        try:
            new_key = api_key_rotate(
                key=key, new_secret=new_secret, label=label, grace_seconds=grace_seconds
            )
        except CredentialError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"key {new_key.pk} ({new_key.label}, …{new_key.last4}) is active; "
                f"key {key.pk} (…{key.last4}) retires at {key.retire_at:%Y-%m-%d %H:%M:%S} UTC"
            )
        )
