// candlecast pages: draws Plotly charts from the JSON embedded in the page (#page-data).
// Trace `meta` fields name what a trace holds (candles, p10, p50, p90, ...) so tests can read them back.
"use strict";

(function () {
  const config = JSON.parse(document.getElementById("page-config").textContent);
  const data = JSON.parse(document.getElementById("page-data").textContent);
  const now = Date.parse(config.now);
  const BAND = "rgba(37, 99, 235, 0.18)";
  const MEDIAN = "#1d4ed8";
  const PLOT_CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  // Plotly reads "2024-01-02T03:00:00" as wall time; the store's timestamps are UTC, and so are the axes.
  const utc = (iso) => (iso ? iso.replace("Z", "") : iso);
  const utcText = (iso) => (iso ? iso.slice(0, 16).replace("T", " ") + " UTC" : "–");

  function ago(iso) {
    const s = Math.max(0, (now - Date.parse(iso)) / 1000);
    if (s < 90) return Math.round(s) + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 172800) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " days ago";
  }

  const isReplay = (asOf) => now - Date.parse(asOf) > config.replay_after_s * 1000;

  function fanTraces(f, withLegend) {
    const x = f.target_timestamps.map(utc);
    return [
      { type: "scatter", mode: "lines", x, y: f.p90, meta: "p90", name: "p90", line: { width: 0 },
        hoverinfo: "x+y", showlegend: false },
      { type: "scatter", mode: "lines", x, y: f.p10, meta: "p10", name: "p10–p90", line: { width: 0 },
        fill: "tonexty", fillcolor: BAND, hoverinfo: "x+y", showlegend: withLegend },
      { type: "scatter", mode: "lines", x, y: f.p50, meta: "p50", name: "p50 (median)",
        line: { color: MEDIAN, width: 2 }, showlegend: withLegend },
    ];
  }

  // -- home: one small fan chart per instrument ----------------------------------------------------------
  function home() {
    let replay = false;
    for (const card of data.cards) {
      const f = card.forecast;
      if (!f) continue;
      replay = replay || isReplay(f.as_of);
      const history = { type: "scatter", mode: "lines", x: f.history.ts.map(utc), y: f.history.close, meta: "close",
        name: "close", line: { color: "#6b7280", width: 1.2 }, showlegend: false };
      const layout = { margin: { l: 4, r: 4, t: 4, b: 4 }, height: 110, xaxis: { visible: false },
        yaxis: { visible: false }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)" };
      Plotly.newPlot("spark-" + card.symbol, [history, ...fanTraces(f, false)], layout, { staticPlot: true });
    }
    for (const el of document.querySelectorAll(".freshness")) {
      el.textContent = "generated " + ago(el.dataset.generated) + " · as of " + utcText(el.dataset.asOf);
    }
    const note = document.getElementById("replay-note");
    if (replay) {
      note.textContent = "Historical replay: these forecasts were made as of past dates from stored market data, " +
        "not from live prices.";
    }
  }

  // -- symbol: candles + fan, with model and timeframe toggles ---------------------------------------------
  function symbolPage() {
    if (!data.selected) return;
    const params = new URLSearchParams(window.location.search);
    let [model, timeframe] = data.selected.split("|");
    if (data.series[(params.get("model_name") || model) + "|" + (params.get("timeframe") || timeframe)]) {
      model = params.get("model_name") || model;
      timeframe = params.get("timeframe") || timeframe;
    }
    const modelButtons = document.querySelectorAll("#model-toggle button");
    const tfButtons = document.querySelectorAll("#timeframe-toggle button");

    function draw() {
      const s = data.series[model + "|" + timeframe];
      const c = s.candles;
      const ohlc = c.open.length > 0 && c.open.every((v) => v !== null);
      const candles = ohlc
        ? { type: "candlestick", x: c.ts.map(utc), open: c.open, high: c.high, low: c.low, close: c.close,
            meta: "candles", name: "candles", showlegend: false }
        : { type: "scatter", mode: "lines", x: c.ts.map(utc), y: c.close, meta: "candles", name: "close",
            line: { color: "#374151" } };
      const layout = {
        margin: { l: 48, r: 12, t: 8, b: 36 }, height: 420, hovermode: "x unified",
        xaxis: { rangeslider: { visible: false }, title: { text: "UTC" } },
        yaxis: { title: { text: data.symbol } },
        legend: { orientation: "h", y: 1.08 },
        shapes: [{ type: "line", xref: "x", yref: "paper", x0: utc(s.as_of), x1: utc(s.as_of), y0: 0, y1: 1,
          line: { dash: "dot", color: "#9ca3af", width: 1 } }],
      };
      Plotly.react("fan", [candles, ...fanTraces(s, true)], layout, PLOT_CONFIG);

      const status = document.getElementById("status");
      const replay = isReplay(s.as_of)
        ? `Historical replay: this forecast was made as of ${utcText(s.as_of)} from stored market data, not live prices. `
        : `Forecast as of ${utcText(s.as_of)}. `;
      status.textContent = replay + `Model ${s.model_name}${s.model_version ? " " + s.model_version : ""}, ` +
        `generated ${utcText(s.generated_at)} (${ago(s.generated_at)}); last close ${fmt(s.last_close)}.` +
        (config.stale ? " Stale: the database is unreachable, so a newer forecast may exist." : "");
      status.dataset.generatedAt = s.generated_at;

      const rows = s.target_timestamps.map((t, i) =>
        `<tr><td>${utcText(t)}</td><td>${fmt(s.p10[i])}</td><td>${fmt(s.p50[i])}</td><td>${fmt(s.p90[i])}</td></tr>`);
      document.querySelector("#values tbody").innerHTML = rows.join("");

      for (const b of modelButtons) {
        b.classList.toggle("active", b.dataset.model === model);
        b.disabled = !data.series[b.dataset.model + "|" + timeframe] &&
          !data.timeframes.some((tf) => data.series[b.dataset.model + "|" + tf]);
      }
      for (const b of tfButtons) {
        b.classList.toggle("active", b.dataset.timeframe === timeframe);
        b.disabled = !data.series[model + "|" + b.dataset.timeframe];
      }
      const url = new URL(window.location.href);
      url.searchParams.set("model_name", model);
      url.searchParams.set("timeframe", timeframe);
      window.history.replaceState(null, "", url);
    }

    for (const b of modelButtons) {
      b.addEventListener("click", () => {
        model = b.dataset.model;
        if (!data.series[model + "|" + timeframe]) {
          timeframe = data.timeframes.find((tf) => data.series[model + "|" + tf]);
        }
        draw();
      });
    }
    for (const b of tfButtons) {
      b.addEventListener("click", () => {
        timeframe = b.dataset.timeframe;
        draw();
      });
    }
    draw();
  }

  function fmt(v) {
    if (v === null || v === undefined) return "–";
    return Math.abs(v) >= 1000 ? v.toFixed(2) : v.toPrecision(6);
  }

  // -- evaluation: coverage per instrument and model, calibration per model ----------------------------------
  function evaluation() {
    if (!data.rows.length) return;
    const groups = {};
    for (const r of data.rows) {
      const name = r.model_name + " " + r.timeframe;
      (groups[name] = groups[name] || { x: [], y: [] }).x.push(r.symbol);
      groups[name].y.push(r.coverage);
    }
    const coverage = Object.entries(groups).map(([name, g]) =>
      ({ type: "bar", name, meta: "coverage:" + name, x: g.x, y: g.y, hovertemplate: "%{x}: %{y:.1%}" }));
    Plotly.newPlot("coverage", coverage, {
      margin: { l: 48, r: 12, t: 8, b: 60 }, height: 320, barmode: "group",
      yaxis: { range: [0, 1], tickformat: ".0%", title: { text: "inside p10–p90" } },
      legend: { orientation: "h", y: 1.12 },
      shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: data.nominal_coverage, y1: data.nominal_coverage,
        line: { dash: "dash", color: "#dc2626" } }],
      annotations: [{ xref: "paper", x: 1, y: data.nominal_coverage, text: "nominal 80%", showarrow: false,
        xanchor: "right", yanchor: "bottom", font: { color: "#dc2626" } }],
    }, PLOT_CONFIG);

    const calibration = data.calibration.map((c) => ({
      type: "scatter", mode: "lines+markers", name: c.model_name + " " + c.timeframe + ` (n=${c.n_steps})`,
      meta: "calibration:" + c.model_name + " " + c.timeframe, x: c.nominal, y: c.observed,
    }));
    calibration.push({ type: "scatter", mode: "lines", name: "calibrated", meta: "diagonal", x: [0, 1], y: [0, 1],
      line: { dash: "dot", color: "#9ca3af" } });
    Plotly.newPlot("calibration", calibration, {
      margin: { l: 48, r: 12, t: 8, b: 44 }, height: 340,
      xaxis: { range: [0, 1], tickformat: ".0%", title: { text: "forecast quantile (nominal)" } },
      yaxis: { range: [0, 1], tickformat: ".0%", title: { text: "realised below it" } },
      legend: { orientation: "h", y: 1.12 },
    }, PLOT_CONFIG);
  }

  const pages = { home, symbol: symbolPage, evaluation };
  const run = pages[document.body.dataset.page];
  if (run) run();
  document.body.dataset.ready = "1";
})();
