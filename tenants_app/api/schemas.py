"""What every resource's input schemas share: no unknown fields, no NUL characters, no
instant the databases cannot store, and the Patch field convention."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Field, Schema
from pydantic import ConfigDict, field_validator

# PostgreSQL integer columns (PositiveIntegerField)
MAX_INT = 2_147_483_647
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"

# Optional fields of the Patch schemas default to None but are typed without None
# where the column cannot be null: an explicit null is then a 422 naming the
# field, while an absent field is simply left alone (exclude_unset).


def patch_field(**kwargs: Any) -> Any:
    """``Field(default=None, **kwargs)`` for such a field. Typed ``Any``: the default
    (never validated, never read: the operations take ``model_dump(exclude_unset=True)``)
    is not of the field's type, which is what keeps an explicit null a 422."""
    return Field(default=None, **kwargs)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


# The range of instants both databases (and Python, once a time is in UTC) can hold:
# 9999-12-31T23:59:59-14:00 is in year 10000 in UTC (a 500 on SQLite; on PostgreSQL a
# row that could not be read back).
EARLIEST_TIME = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
LATEST_TIME = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


def _storable_time(value: dt.datetime) -> bool:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    try:
        return EARLIEST_TIME <= aware.astimezone(dt.UTC) < LATEST_TIME
    except OverflowError:
        return False


class Strict(Schema):
    model_config = ConfigDict(extra="forbid")

    # PostgreSQL cannot store NUL in text (SQLite can): refuse it up front, the same on both
    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _has_nul(value):
            raise ValueError("must not contain NUL (\\u0000) characters")
        if isinstance(value, dt.datetime) and not _storable_time(value):
            raise ValueError(
                f"must be after {EARLIEST_TIME:%Y-%m-%d} and before {LATEST_TIME:%Y-%m-%d} (UTC)"
            )
        return value
