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

  function bytes(value) {
    var units = ["B", "KB", "MB", "GB", "TB", "PB"];
    var i = 0;
    while (value >= 1024 && i < units.length - 1) { value /= 1024; i++; }
    return value.toFixed(i ? 1 : 0) + " " + units[i];
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

    bar("chart-jobs", data.jobs, ["queued", "running", "completed", "failed"], false);
    doughnut("chart-rpo", data.rpo, ["met", "missed"]);
    bar("chart-levels", data.levels, ["excellent", "good", "fair", "poor"], true);
    bar("chart-alerts", data.alerts, ["critical", "warning", "info"], true);

    var tiers = ["snapshot", "standard", "archive"];
    draw("chart-storage", {
      type: "bar",
      data: {
        labels: data.storage_daily.labels,
        datasets: data.storage_daily.series.map(function (s, i) {
          return { label: s.label, data: s.values, backgroundColor: PALETTE[tiers[i]] };
        })
      },
      options: {
        plugins: { tooltip: { callbacks: { label: function (ctx) {
          return ctx.dataset.label + ": " + bytes(ctx.parsed.y);
        } } } },
        scales: {
          x: { stacked: true },
          y: { stacked: true, beginAtZero: true, ticks: { callback: function (v) { return bytes(v); } } }
        }
      }
    });
  });
})();
