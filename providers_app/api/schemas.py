"""An API key as both routers show it: by label and last four characters, never the
secret."""

from __future__ import annotations

from datetime import datetime

from ninja import Schema


class ApiKeyOut(Schema):
    id: int
    label: str
    last4: str
    state: str
    failure_count: int
    last_error_type: str
    created_at: datetime
    rotated_at: datetime | None
    retire_at: datetime | None
    retired_at: datetime | None
