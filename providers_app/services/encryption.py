"""Re-encrypting stored secrets with the first FERNET_KEYS key.

Rotation of the encryption key: put a new key first in FERNET_KEYS (the old
ones after it, so existing values still decrypt), run
``manage.py rotate_fernet_keys``, then drop the old key.
"""

from __future__ import annotations

from django.apps import apps
from django.db import models, transaction
from fernet_fields import EncryptedField


def encrypted_models() -> list[tuple[type[models.Model], list[str]]]:
    """Every installed model with encrypted fields, and those fields' names."""
    found = []
    for model in apps.get_models():
        fields = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedField)]
        if fields:
            found.append((model, fields))
    return found


def reencrypt_all() -> dict[str, int]:
    """Read every encrypted value (any key decrypts) and write it back (the first key encrypts).

    One transaction per model, so a failure leaves no model half-rotated. Row
    by row on purpose: ``bulk_update`` builds a CASE expression, which the
    encrypted field would encrypt as if it were the value (a test proves the
    row-by-row path keeps every value intact).
    """
    counts: dict[str, int] = {}
    for model, fields in encrypted_models():
        count = 0
        with transaction.atomic():
            for row in (
                # by primary key: a model's default ordering may join a nullable relation
                # (AlertChannel orders by its tenant's name), and PostgreSQL refuses FOR
                # UPDATE on the nullable side of an outer join
                model._base_manager.select_for_update()
                .order_by("pk")
                .only("pk", *fields)
                .iterator(chunk_size=500)
            ):
                row.save(update_fields=fields)
                count += 1
        counts[model._meta.label] = count
    return counts
