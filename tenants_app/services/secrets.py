"""Minting and checking the secrets aipk hands out (virtual keys, admin tokens).

They are random 256-bit tokens, so a single unsalted SHA-256 is the right
hash: there is nothing to brute-force, and a lookup by hash stays one indexed
query. Only a short prefix is kept in clear, to show which key is which.
"""

from __future__ import annotations

import hashlib
import secrets

VIRTUAL_KEY_PREFIX = "aipk-"
ADMIN_TOKEN_PREFIX = "aipkadm-"
SHOWN_PREFIX_LENGTH = 12


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret(prefix: str) -> tuple[str, str, str]:
    """(secret, its hash, the prefix safe to show)."""
    secret = prefix + secrets.token_urlsafe(32)
    return secret, secret_hash(secret), secret[:SHOWN_PREFIX_LENGTH]
