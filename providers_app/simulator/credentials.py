"""Reading and masking credentials. No full secret ever leaves the simulator."""

from __future__ import annotations

from multidict import CIMultiDictProxy

# Header names whose values are secrets (compared lower-case).
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie"}
)
SECRET_QUERY_PARAMS = frozenset({"key", "api_key", "access_token"})


def mask(secret: str) -> str:
    """Keep only the last 4 characters, the way the console labels keys."""
    return "..." + secret[-4:] if len(secret) > 4 else "..."


def mask_header(name: str, value: str) -> str:
    lowered = name.lower()
    if lowered not in SECRET_HEADERS:
        return value
    if lowered in ("authorization", "proxy-authorization"):
        scheme, sep, credential = value.partition(" ")
        if sep:
            return f"{scheme} {mask(credential.strip())}"
    return mask(value)


def bearer_token(headers: CIMultiDictProxy[str]) -> str | None:
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def is_rejected(secret: str) -> bool:
    """The simulator's one rule for bad credentials: anything starting with ``invalid``."""
    return secret.startswith("invalid")
