"""Charts as data: static/console/charts.js draws them with the vendored Chart.js
(static/vendor/) from a ``<script type="application/json" id="console-charts">``
(Django's ``json_script``; the Content-Security-Policy runs no inline script), and
templates/console/_chart.html prints the same figures as a small table, for screen
readers and for browsers without scripts. Each point can carry a link (a click on
its bar opens it) and a full title for the tooltip. Labels travel as JSON and are
drawn on a canvas or escaped by the template: never interpreted as HTML."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

Number = int | float | Decimal | None
# the stylesheet's colour names a series may take (custom properties, light and dark)
COLORS = ("accent", "ok", "warn", "bad", "muted", *(f"chart-{n}" for n in range(1, 7)))


def _number(value: Number) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return float(value)
    return value


def format_value(value: Number, unit: str) -> str:
    """How the table prints one figure; charts.js formats ticks and tooltips alike."""
    if value is None:
        return "—"
    if unit == "usd":
        return f"${Decimal(value):,.4f}"
    if unit == "ms":
        return f"{float(value):,.0f} ms"
    if unit == "percent":
        return f"{float(value):.0f}%"
    return f"{int(value):,}"


def chart(
    chart_id: str,
    title: str,
    *,
    kind: str,
    unit: str,
    labels: Sequence[str],
    series: list[tuple[str, str, Sequence[Number]]],
    titles: Sequence[str] | None = None,
    links: Sequence[str | None] | None = None,
    stacked: bool = False,
    horizontal: bool = False,
) -> dict[str, Any]:
    """One chart: ``kind`` bar or line; ``unit`` count, tokens, usd, ms or percent;
    ``series`` as (name, colour name, one value per label; None leaves a gap)."""
    titles = list(titles) if titles is not None else list(labels)
    links = list(links) if links is not None else [None] * len(labels)
    for name, color, values in series:
        if color not in COLORS or len(values) != len(labels):
            raise ValueError(f"series {name!r}: colour {color!r}, {len(values)} values")
    return {
        "id": chart_id,
        "title": title,
        "kind": kind,
        "unit": unit,
        "stacked": stacked,
        "horizontal": horizontal,
        # nothing to draw: no value, or only zeros (an axis of 0..1 tells nothing);
        # a health share of 0% is a value
        "empty": all(
            v is None or (v == 0 and unit != "percent") for _, _, values in series for v in values
        ),
        "labels": list(labels),
        "titles": titles,
        "links": links,
        "series": [
            {"name": name, "color": color, "values": [_number(v) for v in values]}
            for name, color, values in series
        ],
        # for the template's table: one row per label, one cell per series
        "rows": [
            {
                "label": titles[index],
                "link": links[index],
                "cells": [format_value(values[index], unit) for _, _, values in series],
            }
            for index in range(len(labels))
        ],
    }


def chart_data(charts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """What charts.js needs (the table rows stay in the HTML)."""
    return [{k: v for k, v in spec.items() if k != "rows"} for spec in charts if not spec["empty"]]
