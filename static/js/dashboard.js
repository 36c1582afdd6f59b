// Draws the dashboard's charts from the JSON in #dashboard-data (rendered by json_script, a
// data block that CSP does not treat as script). The numbers are also in the page's tables,
// so the page reads the same without JavaScript.
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  var PALETTE = {
    queued: "#8c959f", running: "#0b5cad", completed: "#1a7f37", failed: "#a40e26",
    met: "#1a7f37", missed: "#a40e26",
    snapshot: "#8c959f", standard: "#0b5cad", archive: "#3b1f86",
    excellent: "#116329", good: "#4ac26b", fair: "#d4a72c", poor: "#a40e26",
    critical: "#a40e26", warning: "#d4a72c", info: "#0b5cad"
  };

  function colours(keys) {
    return keys.map(function (k) { return PALETTE[k] || "#57606a"; });
  }

  var UNITS = ["B", "KB", "MB", "GB", "TB", "PB"];

  function unitOf(value) {
    var i = 0;
    while (value >= 1024 && i < UNITS.length - 1) { value /= 1024; i++; }
    return i;
  }

  function bytes(value) {
    var i = unitOf(value);
    return (value / Math.pow(1024, i)).toFixed(i ? 1 : 0) + " " + UNITS[i];
  }

  // A step of 1, 2 or 5 times a power of ten giving about `count` ticks up to `max`.
  function niceStep(max, count) {
    var raw = max / count;
    var magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    var norm = raw / magnitude;
    return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * magnitude;
  }

  // The bytes axis: one unit for every tick (the unit of the largest bar), steps that are
  // round in that unit, and as many decimals as the step needs (never "1 B, 1 B, 1 B").
  function bytesAxis(max) {
    var i = unitOf(max);
    var unit = Math.pow(1024, i);
    var step = i === 0 ? Math.max(1, niceStep(max, 5)) : niceStep(max / unit, 5);
    var decimals = Math.max(0, -Math.floor(Math.log10(step)));
    return {
      stepSize: step * (i === 0 ? 1 : unit),
      callback: function (v) { return (v / unit).toFixed(decimals) + " " + UNITS[i]; }
    };
  }

  function sum(values) {
    return values.reduce(function (a, b) { return a + b; }, 0);
  }

  // Replace a chart with a sentence when it has nothing to draw; the table stays.
  function empty(id, text) {
    var canvas = document.getElementById(id);
    if (!canvas) return;
    var note = document.createElement("p");
    note.className = "chart-empty";
    note.textContent = text;
    canvas.replaceWith(note);
  }

  function draw(id, config) {
    var canvas = document.getElementById(id);
    if (canvas) new window.Chart(canvas, config);
  }

  function bar(id, data, keys, horizontal) {
    draw(id, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: [{ label: "Count", data: data.values, backgroundColor: colours(keys) }]
      },
      options: {
        indexAxis: horizontal ? "y" : "x",
        plugins: { legend: { display: false } },
        scales: { x: { beginAtZero: true, ticks: { precision: 0 } },
                  y: { beginAtZero: true, ticks: { precision: 0 } } }
      }
    });
  }

  function doughnut(id, data, keys, formatter) {
    draw(id, {
      type: "doughnut",
      data: {
        labels: data.labels,
        datasets: [{ data: data.values, backgroundColor: colours(keys) }]
      },
      options: {
        aspectRatio: 2,
        plugins: {
          legend: { position: "right" },
          tooltip: formatter ? { callbacks: { label: function (ctx) {
            return ctx.label + ": " + formatter(ctx.parsed);
          } } } : {}
        }
      }
    });
  }

  ready(function () {
    var source = document.getElementById("dashboard-data");
    if (!source || !window.Chart) return;
    var data = JSON.parse(source.textContent);
    window.Chart.defaults.animation = false;

    if (sum(data.jobs.values)) {
      bar("chart-jobs", data.jobs, ["queued", "running", "completed", "failed"], false);
    } else empty("chart-jobs", "No jobs in the last 24 hours.");
    if (sum(data.rpo.values)) doughnut("chart-rpo", data.rpo, ["met", "missed"]);
    else empty("chart-rpo", "No protected items yet.");
    if (sum(data.levels.values)) {
      bar("chart-levels", data.levels, ["excellent", "good", "fair", "poor"], true);
    } else empty("chart-levels", "No vaults yet.");
    if (sum(data.alerts.values)) bar("chart-alerts", data.alerts, ["critical", "warning", "info"], true);
    else empty("chart-alerts", "No open alerts.");

    var tiers = ["snapshot", "standard", "archive"];
    var days = data.storage_daily.labels.map(function (_, d) {
      return sum(data.storage_daily.series.map(function (s) { return s.values[d]; }));
    });
    var highest = Math.max.apply(null, days.concat([0]));
    if (!highest) {
      empty("chart-storage", "No recovery points written in the last 14 days.");
      return;
    }
    var narrow = window.matchMedia("(max-width: 700px)").matches;
    var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    draw("chart-storage", {
      type: "bar",
      data: {
        // "2026-11-17" reads "17 Nov" under its bar (the table and tooltip keep the year).
        labels: data.storage_daily.labels.map(function (day) {
          var parts = day.split("-");
          return Number(parts[2]) + " " + MONTHS[Number(parts[1]) - 1];
        }),
        datasets: data.storage_daily.series.map(function (s, i) {
          return { label: s.label, data: s.values, backgroundColor: PALETTE[tiers[i]] };
        })
      },
      options: {
        aspectRatio: narrow ? 1.2 : 2,
        plugins: { tooltip: { callbacks: {
          title: function (items) { return data.storage_daily.labels[items[0].dataIndex]; },
          label: function (ctx) { return ctx.dataset.label + ": " + bytes(ctx.parsed.y); }
        } } },
        scales: {
          x: { stacked: true, ticks: { maxRotation: 0, autoSkip: true } },
          y: { stacked: true, beginAtZero: true, ticks: bytesAxis(highest) }
        }
      }
    });
  });
})();
