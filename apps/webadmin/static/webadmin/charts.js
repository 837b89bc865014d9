/* Draws the dashboard's charts from the JSON the server embeds (#dashboard-charts) with Chart.js. */
(function () {
  "use strict";
  var palette = { p50: "#44d1b6", p95: "#4656d8", p99: "#b4232f", objective: "#a45c00", spent: "#4656d8" };

  /* Writes "ε 1.0" above each point of the privacy line: each point is one training run. */
  var runLabels = {
    id: "sottoRunLabels",
    afterDatasetsDraw: function (chart, args, options) {
      if (!options || !options.runs) { return; }
      var meta = chart.getDatasetMeta(0);
      var ctx = chart.ctx;
      ctx.save();
      ctx.font = "600 11px system-ui, sans-serif";
      ctx.fillStyle = "#1d2330";
      ctx.textAlign = "center";
      meta.data.forEach(function (point, i) {
        var run = options.runs[i];
        if (run) { ctx.fillText("ε " + eps(run.epsilon), point.x, point.y - 10); }
      });
      ctx.restore();
    }
  };

  /* Same rules as apps/webadmin/formatting.py: ε with two decimals, shares with one. */
  function eps(v) { v = Number(v); return v !== 0 && Math.abs(v) < 0.005 ? String(Number(v.toPrecision(2))) : v.toFixed(2); }
  function pct(v) { return Number(v).toFixed(1); }

  function flat(value, n) { var out = []; for (var i = 0; i < n; i++) { out.push(value); } return out; }

  function latencyConfig(s) {
    var sets = [
      { label: "p50", data: s.p50, borderColor: palette.p50, backgroundColor: palette.p50, tension: 0.25, spanGaps: true },
      { label: "p95", data: s.p95, borderColor: palette.p95, backgroundColor: palette.p95, tension: 0.25, spanGaps: true },
      { label: "p99", data: s.p99, borderColor: palette.p99, backgroundColor: palette.p99, tension: 0.25, spanGaps: true }
    ];
    if (s.objective_ms !== null && s.objective_ms !== undefined) {
      sets.push({ label: "objective (" + s.objective_percentile + " ≤ " + s.objective_ms + " ms)", data: flat(s.objective_ms, s.labels.length),
                  borderColor: palette.objective, borderDash: [6, 4], pointRadius: 0, borderWidth: 2 });
    }
    return { type: "line", data: { labels: s.labels, datasets: sets },
             options: { scales: { y: { beginAtZero: true, title: { display: true, text: "ms" } } } } };
  }

  function privacyConfig(p) {
    return {
      type: "line",
      data: { labels: p.labels, datasets: [
        { label: "ε spent", data: p.spent, borderColor: palette.spent, backgroundColor: "rgba(70,86,216,.12)", fill: true, stepped: true, pointRadius: 4 },
        { label: "budget (ε " + eps(p.total) + ")", data: flat(p.total, p.labels.length), borderColor: palette.p99, borderDash: [6, 4], pointRadius: 0 }
      ] },
      options: { scales: { y: { beginAtZero: true, suggestedMax: p.total * 1.1, title: { display: true, text: "ε" } } },
                 plugins: { sottoRunLabels: { runs: p.runs },
                            tooltip: { callbacks: { afterLabel: function (item) { var r = p.runs[item.dataIndex]; return item.datasetIndex === 0 && r ? r.label + ": ε " + eps(r.epsilon) : ""; } } } } }
    };
  }

  /* Overspent budgets are drawn down to -100 % (the server bounds them there too: "exhausted").
     A class too quiet to judge (null) draws no bar; the page lists it under the chart. */
  function budgetConfig(b) {
    var colors = b.remaining.map(function (v) { return v === null ? "#c9cee0" : (v < 0 ? "#b4232f" : (v < 25 ? "#a45c00" : "#16794c")); });
    var drawn = b.remaining.map(function (v) { return v === null ? null : Math.max(v, -100); });
    return { type: "bar", data: { labels: b.labels, datasets: [{ label: "% of error budget left (28 days)", data: drawn, backgroundColor: colors }] },
             options: { indexAxis: "y", scales: { x: { min: -100, max: 100 } },
                        plugins: { tooltip: { callbacks: { label: function (item) { var v = b.remaining[item.dataIndex]; return v === null ? "not judged yet" : (v < 0 ? "exhausted" : pct(v) + " % left"); } } } } } };
  }

  function encodingConfig(e) {
    return { type: "doughnut", data: { labels: ["ready", "pending", "failed"],
             datasets: [{ data: [e.ready, e.pending, e.failed], backgroundColor: ["#16794c", "#c9cee0", "#b4232f"] }] },
             options: { cutout: "62%" } };
  }

  document.addEventListener("DOMContentLoaded", function () {
    var source = document.getElementById("dashboard-charts");
    if (!source || typeof Chart === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    Chart.register(runLabels);
    Chart.defaults.animation = false;
    Chart.defaults.maintainAspectRatio = false;
    Chart.defaults.font.family = "system-ui, sans-serif";
    Array.prototype.forEach.call(document.querySelectorAll("canvas[data-chart]"), function (canvas) {
      var kind = canvas.getAttribute("data-chart");
      var config = null;
      if (kind === "latency") { config = latencyConfig(data.latency[Number(canvas.getAttribute("data-index"))]); }
      else if (kind === "privacy") { config = privacyConfig(data.privacy); }
      else if (kind === "error_budget") { config = budgetConfig(data.error_budget); }
      else if (kind === "encoding") { config = encodingConfig(data.encoding); }
      if (config) { new Chart(canvas, config); canvas.setAttribute("data-rendered", "true"); }
    });
  });

  /* The objectives page's range buttons ([data-range-selector] links to ?range=): load that range's
     series as JSON and redraw the latency charts in place. Without JavaScript, or if the request
     fails, the link loads the page for that range instead. */
  function requestsText(n, range) { return n ? n + " request" + (n === 1 ? "" : "s") + " in " + range : "no traffic in " + range; }

  function showRange(selector, data) {
    Array.prototype.forEach.call(document.querySelectorAll("canvas[data-chart=latency]"), function (canvas) {
      var chart = Chart.getChart(canvas);
      var s = data.latency[Number(canvas.getAttribute("data-index"))];
      if (!chart || !s) { return; }
      var config = latencyConfig(s);
      chart.data.labels = config.data.labels;
      chart.data.datasets = config.data.datasets;
      chart.update();
      canvas.setAttribute("data-range", data.range);
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-requests-index]"), function (el) {
      var s = data.latency[Number(el.getAttribute("data-requests-index"))];
      if (s) { el.textContent = requestsText(s.requests, data.range); }
    });
    Array.prototype.forEach.call(selector.querySelectorAll("[data-range]"), function (a) {
      var on = a.getAttribute("data-range") === data.range;
      a.classList.toggle("secondary", !on);
      if (on) { a.setAttribute("aria-current", "true"); } else { a.removeAttribute("aria-current"); }
    });
    if (window.history && window.history.replaceState) { window.history.replaceState(null, "", "?range=" + encodeURIComponent(data.range)); }
  }

  document.addEventListener("click", function (event) {
    var link = event.target && event.target.closest ? event.target.closest("[data-range-selector] a[data-range]") : null;
    if (!link || typeof Chart === "undefined" || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) { return; }
    var selector = link.closest("[data-range-selector]");
    event.preventDefault();
    selector.setAttribute("aria-busy", "true");
    fetch(selector.getAttribute("data-series-url") + "?range=" + encodeURIComponent(link.getAttribute("data-range")),
          { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(function (data) { selector.removeAttribute("aria-busy"); showRange(selector, data); })
      .catch(function () { window.location.href = link.href; });
  });
})();
