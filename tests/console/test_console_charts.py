"""Server-rendered SVG charts: escaped labels, no scripts, nothing fetched."""

import re

from aipk_site.console.charts import bar_chart, line_chart


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
