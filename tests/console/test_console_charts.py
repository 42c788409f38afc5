"""Server-rendered SVG charts: escaped labels, no scripts, nothing fetched."""

import re

from tenants_app.console.charts import bar_chart, line_chart


def test_it_escapes_labels_and_series_names():
    svg = bar_chart("Spend", ["<img src=x onerror=alert(1)>"], {"<b>tenant</b>": [1]})

    assert "<img" not in svg and "<b>" not in svg
    assert "&lt;img src=x onerror=alert(1)&gt;" in svg


def test_it_holds_no_script_and_fetches_nothing():
    for svg in (
        bar_chart("Requests", ["a", "b"], {"ok": [1, 2], "failed": [0, 1]}, stacked=True),
        line_chart("Latency", ["a", "b", "c"], {"p50": [1, None, 3]}),
    ):
        assert svg.startswith("<svg")
        assert "<script" not in svg
        links = re.findall(r"(?:href|src)=\"([^\"]+)\"", svg)
        assert all(not link.startswith(("http:", "https:", "//")) for link in links)


def test_it_draws_one_bar_per_value():
    svg = bar_chart("Requests", ["a", "b", "c"], {"ok": [1, 2, 3]})

    assert svg.count('class="rect reactive tooltip-trigger"') == 3


def test_it_labels_a_count_axis_with_whole_numbers_each_once():
    svg = bar_chart("Requests", ["a", "b"], {"ok": [2, 1], "failed": [1, 0]}, stacked=True)

    y_axis = svg[svg.index('class="axis y') :]
    y_axis = y_axis[: y_axis.index('class="axis x')] if 'class="axis x' in y_axis else y_axis
    labels = re.findall(r"<title>([^<]+)</title>", y_axis)
    assert labels == sorted(set(labels), key=labels.index)  # no label repeated
    assert set(labels) == {"0", "1", "2", "3"}
