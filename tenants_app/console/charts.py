"""Server-rendered SVG charts (pygal): the page works without JavaScript and
nothing is fetched from a CDN. pygal's default output links tooltip scripts on
the internet and always inlines a config <script>; charts here are built with
``js=[]`` and the config script is dropped from the tree before serialising,
so the inlined SVG holds no script at all. pygal builds the SVG as an XML tree,
so labels (tenant, model names) are escaped, never interpreted."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence

import pygal
from django.utils.safestring import SafeString, mark_safe
from pygal.style import Style

# Text and guide lines take the console's own colours (custom properties of console.css,
# inherited by the inline SVG), so a chart follows the light or dark theme; the fallback
# after the comma is for the SVG seen on its own. pygal copies these strings into the
# SVG's <style> untouched (series colours, which it computes with, stay plain hex).
_STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="var(--ink, #1d2330)",
    foreground_strong="var(--ink, #1d2330)",
    foreground_subtle="var(--muted, #667085)",
    colors=("#3b5bdb", "#e67700", "#2b8a3e", "#c92a2a", "#7048e8", "#1098ad"),
    font_family="system-ui, sans-serif",
    # charts are drawn 600 wide and usually shown smaller: fonts a notch larger
    label_font_size=14,
    major_label_font_size=14,
    legend_font_size=14,
    title_font_size=16,
)


def _svg(chart: pygal.graph.graph.Graph) -> SafeString:
    tree = chart.render_tree()
    for parent in tree.iter():
        for child in list(parent):
            if child.tag == "script":
                parent.remove(child)
    return mark_safe(ElementTree.tostring(tree, encoding="unicode"))  # noqa: S308 -- escaped XML


def _common(title: str, labels: Sequence[str]) -> dict:
    # show every n-th x label so 30 days or 24 hours stay readable
    every = max(1, len(labels) // 12)
    return {
        "title": title,
        "style": _STYLE,
        "js": [],
        "disable_xml_declaration": True,
        "width": 600,
        "height": 300,
        "show_y_guides": True,
        "show_x_guides": False,
        "x_label_rotation": 0,
        "show_minor_x_labels": False,
        "x_labels_major_every": every,
        "truncate_label": -1,
        "legend_at_bottom": True,
        "print_values": False,
        "no_data_text": "no data yet",
        "margin": 12,
    }


def _whole_number_ticks(series: dict[str, Sequence[float]], stacked: bool) -> list[int] | None:
    """Tick marks for counts: pygal's own ticks fall on fractions (0.2, 0.4…), which a
    whole-number format then prints as repeated labels ("0, 0, 1, 1…")."""
    columns = list(zip(*series.values(), strict=True))
    if any(float(v) != int(v) for column in columns for v in column if v is not None):
        return None
    top = max(((sum(c) if stacked else max(c, default=0)) for c in columns), default=0)
    top = max(int(top), 1)
    # 1, 2, 5, 10, 20, 50…: the first step that needs at most 6 ticks
    steps = (m * 10**e for e in itertools.count() for m in (1, 2, 5))
    step = next(step for step in steps if top / step <= 6)
    return list(range(0, top + step, step))


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: dict[str, Sequence[float]],
    *,
    value_format: str = "{:,.0f}",
    stacked: bool = False,
) -> SafeString:
    """A bar chart, one bar group per label and one colour per series."""
    chart_class = pygal.StackedBar if stacked else pygal.Bar
    chart = chart_class(
        show_legend=len(series) > 1,
        value_formatter=lambda v: value_format.format(v or 0),
        **_common(title, labels),
    )
    chart.x_labels = list(labels)
    if value_format == "{:,.0f}":
        chart.y_labels = _whole_number_ticks(series, stacked)
    for name, values in series.items():
        chart.add(name, [float(v) for v in values])
    return _svg(chart)


def line_chart(
    title: str,
    labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    *,
    value_format: str = "{:,.0f}",
) -> SafeString:
    """A line chart; ``None`` leaves a gap (no data for that point)."""
    chart = pygal.Line(
        show_legend=len(series) > 1,
        value_formatter=lambda v: value_format.format(v or 0),
        dots_size=2,
        allow_interruptions=True,
        **_common(title, labels),
    )
    chart.x_labels = list(labels)
    for name, values in series.items():
        chart.add(name, [None if v is None else float(v) for v in values])
    return _svg(chart)
