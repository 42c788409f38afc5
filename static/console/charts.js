// The console's charts (dashboard, tenant usage), drawn with the vendored Chart.js
// (static/vendor/) from the figures the page carries in
// <script type="application/json" id="console-charts"> (tenants_app/console/charts.py):
// the Content-Security-Policy runs no inline script. Colours come from the console's
// custom properties, resolved through a probe element (getPropertyValue would hand back
// the unresolved "light-dark(...)"), and the charts are drawn again when the theme
// changes: the picker sets <html data-theme>, "system" follows prefers-color-scheme.
// The tooltip is an HTML element rather than canvas pixels, so it can be read (and
// tested); a click on a bar or a point opens its link (the requests page, filtered).
(function () {
  "use strict";
  if (!window.Chart) {
    return;
  }
  var drawn = [];

  function resolveColors() {
    var probe = document.createElement("span");
    probe.hidden = true;
    document.body.appendChild(probe);
    var names = ["ink", "muted", "line", "panel", "accent", "ok", "warn", "bad",
      "chart-1", "chart-2", "chart-3", "chart-4", "chart-5", "chart-6"];
    var colors = {};
    names.forEach(function (name) {
      probe.style.color = "var(--" + name + ")";
      colors[name] = window.getComputedStyle(probe).color;
    });
    probe.remove();
    return colors;
  }

  function translucent(color, alpha) {
    var parts = color.match(/[\d.]+/g);
    if (!parts || parts.length < 3) {
      return color;
    }
    return "rgba(" + parts[0] + ", " + parts[1] + ", " + parts[2] + ", " + alpha + ")";
  }

  var compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
  var whole = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

  // Significant digits rather than fixed decimals: ticks 0.00005 apart stay distinct.
  function dollars(value) {
    if (value === 0) {
      return "$0";
    }
    if (Math.abs(value) >= 1000) {
      return "$" + compact.format(value);
    }
    return "$" + Number(value.toPrecision(3)).toString();
  }

  function format(unit, value, tick) {
    if (value === null || value === undefined) {
      return "—";
    }
    if (unit === "usd") {
      return tick ? dollars(value) : "$" + Number(value).toFixed(value >= 1 ? 2 : 6).replace(/0+$/, "").replace(/\.$/, "");
    }
    if (unit === "ms") {
      if (value >= 1000) {
        return (value / 1000).toFixed(value >= 10000 ? 0 : 1) + " s";
      }
      return whole.format(value) + " ms";
    }
    if (unit === "percent") {
      return whole.format(value) + "%";
    }
    return tick ? compact.format(value) : whole.format(value);
  }

  function escapeText(text) {
    var span = document.createElement("span");
    span.textContent = text;
    return span.innerHTML;
  }

  function externalTooltip(spec, box) {
    return function (context) {
      var tooltip = context.tooltip;
      if (!tooltip || tooltip.opacity === 0 || !tooltip.dataPoints || !tooltip.dataPoints.length) {
        box.hidden = true;
        return;
      }
      var index = tooltip.dataPoints[0].dataIndex;
      var html = '<div class="dash-tip-title">' + escapeText(spec.titles[index] || spec.labels[index]) + "</div>";
      tooltip.dataPoints.forEach(function (point) {
        var series = spec.series[point.datasetIndex];
        html += '<div class="dash-tip-line"><span class="dash-tip-swatch" data-color="' +
          escapeText(String(point.dataset.borderColor)) + '"></span>' + escapeText(series.name) +
          ": <strong>" + escapeText(format(spec.unit, series.values[index], false)) + "</strong></div>";
      });
      box.innerHTML = html;
      box.querySelectorAll("[data-color]").forEach(function (swatch) {
        swatch.style.color = swatch.dataset.color;
      });
      box.hidden = false;
      var area = context.chart.canvas.parentNode;
      var left = Math.min(tooltip.caretX + 12, area.clientWidth - box.offsetWidth - 4);
      var top = Math.max(0, tooltip.caretY - box.offsetHeight - 8);
      box.style.left = Math.max(0, left) + "px";
      box.style.top = top + "px";
    };
  }

  function draw(spec, canvas, colors) {
    var horizontal = spec.horizontal;
    var valueAxis = horizontal ? "x" : "y";
    var labelAxis = horizontal ? "y" : "x";
    var datasets = spec.series.map(function (series) {
      var color = colors[series.color] || colors.accent;
      return {
        label: series.name,
        data: series.values,
        borderColor: color,
        backgroundColor: spec.kind === "line" ? color : translucent(color, 0.8),
        borderWidth: spec.kind === "line" ? 2 : 0,
        pointRadius: spec.labels.length > 90 ? 0 : 2,
        pointHoverRadius: 5,
        spanGaps: false,
        tension: 0.2,
        maxBarThickness: 36,
      };
    });
    var scales = {};
    scales[labelAxis] = {
      stacked: spec.stacked,
      grid: { display: false },
      border: { color: colors.line },
      ticks: { color: colors.muted, autoSkip: true, maxRotation: 0, autoSkipPadding: 12 },
    };
    if (horizontal) {
      // long tenant and model names stop at an ellipsis; the tooltip has them whole
      scales[labelAxis].ticks.callback = function (value) {
        var label = this.getLabelForValue(value);
        return label.length > 22 ? label.slice(0, 21) + "…" : label;
      };
    }
    scales[valueAxis] = {
      stacked: spec.stacked,
      beginAtZero: true,
      grid: { color: colors.line },
      border: { display: false },
      ticks: {
        color: colors.muted,
        maxTicksLimit: 6,
        // whole steps for counts, milliseconds and percentages: no "1 ms, 1 ms, 0 ms"
        precision: spec.unit === "usd" ? undefined : 0,
        callback: function (value) {
          return format(spec.unit, value, true);
        },
      },
    };
    if (spec.unit === "percent") {
      scales[valueAxis].max = 100;
    }
    var box = canvas.parentNode.querySelector(".dash-tooltip");
    var chart = new window.Chart(canvas, {
      type: spec.kind,
      data: { labels: spec.labels, datasets: datasets },
      options: {
        indexAxis: horizontal ? "y" : "x",
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false, axis: labelAxis },
        plugins: {
          legend: {
            display: spec.series.length > 1,
            position: "bottom",
            labels: { color: colors.ink, boxWidth: 12, boxHeight: 12 },
          },
          tooltip: { enabled: false, external: externalTooltip(spec, box) },
        },
        scales: scales,
        onClick: function (event, elements) {
          var found = elements.length ? elements : chart.getElementsAtEventForMode(event, "index", { intersect: false, axis: labelAxis }, false);
          if (found.length && spec.links[found[0].index]) {
            window.location.assign(spec.links[found[0].index]);
          }
        },
      },
    });
    canvas.dataset.drawn = "true";
    canvas.dataset.ink = colors.ink;
    canvas.addEventListener("mouseleave", function () {
      box.hidden = true;
    });
    return chart;
  }

  function drawAll() {
    drawn.forEach(function (chart) {
      chart.destroy();
    });
    drawn = [];
    var source = document.getElementById("console-charts");
    if (!source) {
      return;
    }
    var specs = JSON.parse(source.textContent);
    var colors = resolveColors();
    specs.forEach(function (spec) {
      var canvas = document.querySelector('canvas[data-chart-canvas="' + spec.id + '"]');
      if (canvas) {
        drawn.push(draw(spec, canvas, colors));
      }
    });
  }

  drawAll();
  // the theme picker sets data-theme; "system" follows the operating system's scheme
  new MutationObserver(drawAll).observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
  if (window.matchMedia) {
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", drawAll);
  }
  // htmx swaps in fresh figures every 30 s: new canvases, new data
  document.addEventListener("htmx:load", function (event) {
    if (event.target.id === "dashboard") {
      drawAll();
    }
  });
})();
