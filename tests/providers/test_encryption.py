"""Secrets at rest: encrypted, and re-encryptable under a new key."""

from __future__ import annotations

from contextlib import contextmanager
from io import StringIO

import pytest
from cryptography.fernet import InvalidToken
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from providers_app.models import ApiKey, OAuthCredential
from providers_app.services.credentials import api_key_add
from providers_app.services.encryption import encrypted_models
from providers_app.services.providers import provider_create

pytestmark = pytest.mark.django_db

SECRETS = ("sk-old-era-secret-0001", "access-token-0002", "refresh-token-0003")


@contextmanager
def fernet_keys(*keys: str):
    """FERNET_KEYS for the block. The fields cache their Fernet, so the cache is dropped too."""

    def forget():
        for model, names in encrypted_models():
            for name in names:
                for attr in ("keys", "fernet_keys", "fernet"):
                    model._meta.get_field(name).__dict__.pop(attr, None)

    forget()
    with override_settings(FERNET_KEYS=list(keys)):
        try:
            yield
        finally:
            forget()
    forget()


def raw_column(table: str, column: str, pk: int) -> bytes:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])  # noqa: S608 - names are constants
        return bytes(cursor.fetchone()[0])


def store_secrets() -> tuple[ApiKey, OAuthCredential]:
    provider = provider_create(name="oa", type="openai")
    key = api_key_add(provider=provider, label="k", secret=SECRETS[0])
    credential = OAuthCredential.objects.create(
        provider=provider,
        account_label="me",
        access_token=SECRETS[1],
        refresh_token=SECRETS[2],
        last4="0002",
    )
    return key, credential


def test_it_never_stores_a_secret_in_plain_text():
    key, credential = store_secrets()
    stored = (
        raw_column("providers_app_apikey", "secret", key.pk)
        + raw_column("providers_app_oauthcredential", "access_token", credential.pk)
        + raw_column("providers_app_oauthcredential", "refresh_token", credential.pk)
    )
    for secret in SECRETS:
        assert secret.encode() not in stored
        assert secret[-4:].encode() not in stored


def test_it_re_encrypts_every_secret_with_the_new_first_key_so_the_old_key_can_go():
    with fernet_keys("old-key"):
        key, credential = store_secrets()
        before = raw_column("providers_app_apikey", "secret", key.pk)
    with fernet_keys("new-key", "old-key"):
        out = StringIO()
        call_command("rotate_fernet_keys", stdout=out)
        assert "providers_app.ApiKey: 1 row(s) re-encrypted" in out.getvalue()
        assert "providers_app.OAuthCredential: 1 row(s) re-encrypted" in out.getvalue()
    assert raw_column("providers_app_apikey", "secret", key.pk) != before
    with fernet_keys("new-key"):
        assert ApiKey.objects.get(pk=key.pk).secret == SECRETS[0]
        refreshed = OAuthCredential.objects.get(pk=credential.pk)
        assert (refreshed.access_token, refreshed.refresh_token) == SECRETS[1:]
    with fernet_keys("old-key"), pytest.raises(InvalidToken):
        ApiKey.objects.get(pk=key.pk)


def test_it_reads_values_written_under_an_older_key_before_rotation():
    with fernet_keys("old-key"):
        key, _ = store_secrets()
    with fernet_keys("new-key", "old-key"):
        assert ApiKey.objects.get(pk=key.pk).secret == SECRETS[0]
