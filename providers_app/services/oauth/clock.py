"""The OAuth flows' clock, in one place so that tests move it forward instead of
sleeping through device-poll intervals and expiries."""

from __future__ import annotations

from datetime import UTC, datetime

from django.utils import timezone


def now() -> datetime:
    return timezone.now()


def from_unix(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if value is not None else None
