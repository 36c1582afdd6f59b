// Draws the Reports page's two charts from the JSON in #report-data (json_script: a data
// block, not a script, so CSP allows it). Every figure is also in the page's tables and in
// the PDF, so the page reads the same without JavaScript.
(function () {
  "use strict";

  var COLOURS = {
    succeeded: "#1a7f37", failed: "#a40e26",
    snapshot: "#8c959f", standard: "#0b5cad", archive: "#3b1f86"
  };
  var UNITS = ["B", "KB", "MB", "GB", "TB", "PB"];

  function bytes(value) {
    var i = 0;
    while (value >= 1024 && i < UNITS.length - 1) { value /= 1024; i++; }
    return value.toFixed(i ? 1 : 0) + " " + UNITS[i];
  }

  function sum(values) {
    return values.reduce(function (a, b) { return a + b; }, 0);
  }

  function empty(id, text) {
    var canvas = document.getElementById(id);
    if (!canvas) return;
    var note = document.createElement("p");
    note.className = "chart-empty";
    note.textContent = text;
    canvas.replaceWith(note);
  }

  function stacked(id, labels, datasets, formatter) {
    var canvas = document.getElementById(id);
    if (!canvas) return;
    new window.Chart(canvas, {
      type: "bar",
      data: { labels: labels, datasets: datasets },
      options: {
        aspectRatio: window.matchMedia("(max-width: 700px)").matches ? 1.2 : 2,
        plugins: { tooltip: { callbacks: { label: function (ctx) {
          return ctx.dataset.label + ": " + (formatter ? formatter(ctx.parsed.y) : ctx.parsed.y);
        } } } },
        scales: {
          x: { stacked: true, ticks: { maxRotation: 0, autoSkip: true } },
          y: { stacked: true, beginAtZero: true,
               ticks: formatter ? { callback: formatter } : { precision: 0 } }
        }
      }
    });
  }

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  ready(function () {
    var source = document.getElementById("report-data");
    if (!source || !window.Chart) return;
    var data = JSON.parse(source.textContent);
    window.Chart.defaults.animation = false;
    var labels = data.days.map(function (day) { return day.slice(5); });  // "03-05"

    if (sum(data.backups.succeeded) + sum(data.backups.failed)) {
      stacked("chart-report-backups", labels, [
        { label: "Succeeded", data: data.backups.succeeded, backgroundColor: COLOURS.succeeded },
        { label: "Failed", data: data.backups.failed, backgroundColor: COLOURS.failed }
      ]);
    } else empty("chart-report-backups", "No backups ended in this period.");

    var series = data.growth.series;
    if (sum(series.map(function (s) { return sum(s.values); }))) {
      stacked("chart-report-growth", labels, series.map(function (s) {
        return { label: s.label, data: s.values, backgroundColor: COLOURS[s.key] };
      }), bytes);
    } else empty("chart-report-growth", "No recovery points written in this period.");
  });
})();
