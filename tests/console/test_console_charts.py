"""Charts as data for charts.js: one value per label, a table of the same figures,
labels never interpreted as HTML, nothing drawn for a chart of only zeros."""

import json
from decimal import Decimal

import pytest
from django.template.loader import render_to_string
from django.utils.html import json_script

from tenants_app.console.charts import chart, chart_data


def spend_chart(labels, values):
    return chart(
        "spend",
        "Spend",
        kind="bar",
        unit="usd",
        labels=labels,
        series=[("spend", "accent", values)],
    )


def test_it_escapes_labels_in_the_table_and_in_the_json():
    spec = spend_chart(["<img src=x onerror=alert(1)>"], [Decimal("1")])

    table = render_to_string("console/_chart.html", {"chart": spec})
    # as the templates embed it: {{ chart_data|json_script:"console-charts" }}
    script = json_script(chart_data([spec]), "console-charts")

    assert "<img" not in table
    assert "&lt;img src=x onerror=alert(1)&gt;" in table
    assert "<img" not in script
    inner = script.split(">", 1)[1].rsplit("</script>", 1)[0]
    assert json.loads(inner)[0]["labels"] == ["<img src=x onerror=alert(1)>"]


def test_it_prints_each_value_with_its_unit_in_the_table():
    spec = spend_chart(["Mar 1", "2"], [Decimal("0.0001"), Decimal("12.5")])

    assert [row["cells"] for row in spec["rows"]] == [["$0.0001"], ["$12.5000"]]
    assert chart_data([spec])[0]["series"][0]["values"] == [0.0001, 12.5]


def test_it_draws_nothing_for_only_zeros_but_keeps_a_zero_percent():
    zeros = spend_chart(["a", "b"], [0, 0])
    down = chart(
        "health",
        "Health",
        kind="line",
        unit="percent",
        labels=["a"],
        series=[("openai", "chart-1", [0])],
    )

    assert zeros["empty"] and chart_data([zeros]) == []
    assert not down["empty"]


def test_it_refuses_a_series_that_does_not_fit_its_labels():
    with pytest.raises(ValueError):
        spend_chart(["a", "b"], [1])
    with pytest.raises(ValueError):
        chart("x", "X", kind="bar", unit="count", labels=["a"], series=[("s", "#ff0000", [1])])
