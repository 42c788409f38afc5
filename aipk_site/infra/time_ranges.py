"""The console's time ranges, one vocabulary for the dashboard and the request log (their
URLs share ``range``, ``since`` and ``until``, so a dashboard figure opens the same window
on the requests page)."""

from __future__ import annotations

import datetime as dt

from django.utils.dateparse import parse_date, parse_datetime

# the preset ranges, counted back from now
RANGES: dict[str, dt.timedelta] = {
    "hour": dt.timedelta(hours=1),
    "day": dt.timedelta(days=1),
    "week": dt.timedelta(days=7),
    "month": dt.timedelta(days=30),
}
RANGE_LABELS = {
    "hour": "Last hour",
    "day": "Last 24 hours",
    "week": "Last 7 days",
    "month": "Last 30 days",
    "custom": "Custom",
}


def parse_moment(text: str, *, end_of_day: bool) -> dt.datetime | None:
    """An ISO datetime or date as an aware UTC datetime, None when it is neither. A time
    without an offset is UTC, as the console shows times; a date alone means its whole UTC
    day: from its midnight, or (``end_of_day``) up to the next one."""
    text = text.strip()
    try:
        # the date first: parse_datetime reads a bare date as its midnight
        day = parse_date(text)
        if day is not None:
            if end_of_day and day < dt.date.max:
                day += dt.timedelta(days=1)
            moment = dt.datetime.combine(day, dt.time.min)
        else:
            parsed = parse_datetime(text)
            if parsed is None:
                return None
            moment = parsed
    except (ValueError, OverflowError):  # well-formed but impossible, e.g. 2026-02-30
        return None
    if moment.utcoffset() is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)
