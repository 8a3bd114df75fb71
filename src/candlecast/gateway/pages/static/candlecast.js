// candlecast pages: draws Plotly charts from the JSON embedded in the page (#page-data).
// Trace `meta` fields name what a trace holds (candles, p10, p50, p90, realised, volume, ...) so tests can read
// them back. Timestamps are UTC candle open times; prices come rounded to the instrument's precision.
"use strict";

(function () {
  const config = JSON.parse(document.getElementById("page-config").textContent);
  const data = JSON.parse(document.getElementById("page-data").textContent);
  const now = Date.parse(config.now);
  const BAND = "rgba(37, 99, 235, 0.18)";
  const MEDIAN = "#1d4ed8";
  const REALISED = "#ea580c";
  const PHONE_WIDTH = 640;
  const PLOT_CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  // Plotly reads "2024-01-02T03:00:00" as wall time; the store's timestamps are UTC, and so are the axes.
  const utc = (iso) => (iso ? iso.replace("Z", "") : iso);
  const utcText = (iso, timeframe) =>
    iso ? (timeframe === "1d" ? iso.slice(0, 10) : iso.slice(0, 16).replace("T", " ") + " UTC") : "–";
  const isPhone = () => window.innerWidth < PHONE_WIDTH;

  function ago(iso) {
    const s = Math.max(0, (now - Date.parse(iso)) / 1000);
    if (s < 90) return Math.round(s) + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 172800) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " days ago";
  }

  // The gateway's rule (payloads/fields.py): six significant digits at the price level, at least 2 decimals.
  function decimalsFor(level) {
    if (level === null || level === undefined || !isFinite(level) || level === 0) return 6;
    return Math.min(10, Math.max(2, 5 - Math.floor(Math.log10(Math.abs(level)))));
  }

  function fmt(v, decimals) {
    if (v === null || v === undefined) return "–";
    return v.toFixed(decimals === undefined ? decimalsFor(v) : decimals);
  }

  const isReplay = (d) => (d.data_mode ? d.data_mode === "replay" : now - Date.parse(d.as_of) > config.replay_after_s * 1000);
  const unitOf = (d) => d.quote_currency || "index points";

  // The fan, anchored at the last close (so it starts where the candles end), with labelled hover values.
  function fanTraces(f, opts) {
    const d = decimalsFor(f.last_close);
    const unit = opts.unit ? " " + opts.unit : "";
    const anchored = (values) => (opts.anchor ? [f.last_close, ...values] : values);
    const x = (opts.anchor ? [opts.anchor, ...f.target_timestamps] : f.target_timestamps).map(utc);
    const hover = (label) => `${label} %{y:.${d}f}${unit}<extra></extra>`;
    return [
      { type: "scatter", mode: "lines", x, y: anchored(f.p90), meta: "p90", name: "p90", line: { width: 0 },
        hovertemplate: hover("p90"), showlegend: false, legendgroup: "band" },
      { type: "scatter", mode: "lines", x, y: anchored(f.p10), meta: "p10", name: "p10–p90 band", line: { width: 0 },
        fill: "tonexty", fillcolor: BAND, hovertemplate: hover("p10"), showlegend: opts.legend, legendgroup: "band" },
      { type: "scatter", mode: "lines", x, y: anchored(f.p50), meta: "p50", name: "p50 (median)",
        line: { color: MEDIAN, width: 2 }, hovertemplate: hover("p50"), showlegend: opts.legend },
    ];
  }

  function candleTrace(c, meta, name, colour) {
    const ohlc = c.open.length > 0 && c.open.every((v) => v !== null);
    if (ohlc) {
      const trace = { type: "candlestick", x: c.ts.map(utc), open: c.open, high: c.high, low: c.low, close: c.close,
        meta, name, showlegend: meta === "realised" };
      if (colour) {
        trace.increasing = { line: { color: colour } };
        trace.decreasing = { line: { color: colour }, fillcolor: "rgba(234, 88, 12, 0.35)" };
      }
      return trace;
    }
    return { type: "scatter", mode: "lines", x: c.ts.map(utc), y: c.close, meta, name,
      line: { color: colour || "#374151" }, showlegend: meta === "realised" };
  }

  // Markets that close (equities, FX, ...): hide the slots with no candle (weekends, holidays, nights) so the
  // chart has no flat gaps. Each missing step between two drawn timestamps becomes a range break.
  function rangeBreaks(timestamps, timeframe) {
    const step = timeframe === "1d" ? 86400000 : 3600000;
    const times = [...new Set(timestamps.map((t) => Date.parse(t)))].sort((a, b) => a - b);
    const values = [];
    for (let i = 1; i < times.length && values.length < 20000; i++) {
      for (let t = times[i - 1] + step; t < times[i]; t += step) values.push(new Date(t).toISOString().slice(0, 19));
    }
    return values.length ? [{ values, dvalue: step }] : [];
  }

  // Legend above the plot on wide screens (left, clear of the toolbar on the right); on phones at the foot of the
  // figure, under the axis title, where the toolbar never is.
  function legendLayout() {
    return isPhone()
      ? { legend: { orientation: "h", x: 0, y: 0, yref: "container", yanchor: "bottom" },
          margin: { l: 52, r: 8, t: 36, b: 130 } }
      : { legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" }, margin: { l: 60, r: 12, t: 40, b: 48 } };
  }

  function onResize(redraw) {
    let timer = null;
    let phone = isPhone();
    window.addEventListener("resize", () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (isPhone() !== phone) {
          phone = isPhone();
          redraw();
        }
      }, 150);
    });
  }

  // -- home: one card per instrument: last price and change, a small fan chart or why there is none -----------
  function home() {
    let replay = false;
    for (const card of data.cards) {
      const f = card.forecast;
      if (!f) continue;
      replay = replay || isReplay(data.data_mode ? data : f);
      const history = { type: "scatter", mode: "lines", x: f.history.ts.map(utc), y: f.history.close, meta: "close",
        name: "close", line: { color: "#6b7280", width: 1.2 }, showlegend: false };
      const anchor = f.history.ts.length ? f.history.ts[f.history.ts.length - 1] : null;
      const layout = { margin: { l: 4, r: 4, t: 4, b: 4 }, height: 110, xaxis: { visible: false },
        yaxis: { visible: false }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)" };
      Plotly.newPlot("spark-" + card.symbol, [history, ...fanTraces(f, { anchor, legend: false })], layout,
        { staticPlot: true });
    }
    for (const el of document.querySelectorAll(".freshness")) {
      el.textContent = "generated " + ago(el.dataset.generated) + " · as of " + utcText(el.dataset.asOf);
    }
    for (const el of document.querySelectorAll(".card-price")) {
      const close = parseFloat(el.dataset.close);
      const d = decimalsFor(close);
      const currency = el.dataset.currency ? " " + el.dataset.currency : "";
      let text = `<span class="price">${fmt(close, d)}${currency}</span>`;
      if (el.dataset.change !== "None") {
        const change = parseFloat(el.dataset.change);
        const pct = parseFloat(el.dataset.changePct);
        const sign = change > 0 ? "+" : "";
        const cls = change > 0 ? "up" : change < 0 ? "down" : "flat";
        const percent = isFinite(pct) ? ` (${sign}${pct.toFixed(2)}%)` : "";
        text += ` <span class="change ${cls}">${sign}${fmt(change, d)}${percent}</span>`;
      }
      el.innerHTML = text;
      el.title = "last close, candle of " + utcText(el.dataset.ts, data.timeframe);
    }
    const note = document.getElementById("replay-note");
    if (replay) {
      note.textContent = "Historical replay: these forecasts were made as of past dates from stored market data, " +
        "not from live prices.";
    }
  }

  const pct = (v, signed) => (v === null || v === undefined ? "–" : (signed && v > 0 ? "+" : "") + (v * 100).toFixed(1) + "%");
  const WINDOWS = { trailing_30d: "trailing 30 days", all: "every scored forecast" };

  // The track record of the series shown: how this model's past forecasts of it did, and the verdict.
  function trackRecord(t, timeframe) {
    const el = document.getElementById("track-record");
    if (!el) return;
    el.hidden = !t;
    el.dataset.verdict = t ? t.verdict : "";
    if (!t) return;
    const verdict = `<span class="verdict ${t.verdict.replaceAll(" ", "-")}">${t.verdict}</span>`;
    const head = `Track record (${WINDOWS[t.window] || t.window}): ${verdict}. `;
    if (!t.scored_forecasts) {
      el.innerHTML = head + `No forecast of this series by this model has been scored yet (a verdict needs ` +
        `${t.min_scored}).`;
      return;
    }
    const period = `forecasts made ${utcText(t.first_as_of, timeframe)} → ${utcText(t.last_as_of, timeframe)}`;
    const p = t.dm_pvalue === null ? "–" : t.dm_pvalue.toPrecision(2);
    // the coverage's 90% interval: overlapping forecasts measure it only roughly
    const interval = t.coverage_low === null || t.coverage_high === null ? "" :
      ` (90% interval ${(t.coverage_low * 100).toFixed(1)}–${pct(t.coverage_high)})`;
    el.innerHTML = head + `${t.scored_forecasts} scored forecasts (${period}); ` +
      `${pct(t.coverage)}${interval} of realised closes inside the p10–p90 band (nominal ${pct(t.nominal_coverage)}` +
      (t.coverage_raw !== null && t.coverage_raw !== t.coverage ? `; the model's raw band ${pct(t.coverage_raw)}` : "") +
      `); CRPS skill vs a random walk ${pct(t.crps_skill, true)} (Diebold–Mariano p = ${p}).` +
      (t.verdict === "too few scores" ? ` A verdict needs ${t.min_scored} scored forecasts.` : "");
  }

  // The same track record per horizon step (the series' by_step columns): coverage of the served band with its 90%
  // interval and of the raw band against the nominal 80% above, CRPS skill vs the random walk below.
  function stepRecord(b, t) {
    const box = document.getElementById("by-step-box");
    if (!box) return;
    box.hidden = !(b && b.step.length);
    if (box.hidden) return;
    document.getElementById("by-step-note").textContent = `${WINDOWS[t.window] || t.window}: ${b.step.length} ` +
      `horizon steps with scores, ${Math.min(...b.scored_steps)}–${Math.max(...b.scored_steps)} scored forecasts ` +
      "each. A forecast's steps share its origin, and neighbouring forecasts share outcomes: the 90% intervals are " +
      "wide where few horizons were scored, and if anything too narrow (they held a calibrated band's coverage " +
      "79–85% of the time in simulation).";
    const up = b.coverage.map((v, i) => (v === null || b.coverage_high[i] === null ? null : b.coverage_high[i] - v));
    const down = b.coverage.map((v, i) => (v === null || b.coverage_low[i] === null ? null : v - b.coverage_low[i]));
    const traces = [
      { type: "scatter", mode: "lines+markers", name: "served band", meta: "step-coverage", x: b.step, y: b.coverage,
        error_y: { type: "data", symmetric: false, array: up, arrayminus: down, color: "#9ca3af", thickness: 1 },
        hovertemplate: "step %{x}: %{y:.1%} inside the served band<extra></extra>" },
      { type: "scatter", mode: "lines", name: "raw band", meta: "step-coverage-raw", x: b.step, y: b.coverage_raw,
        line: { dash: "dot", color: "#111827" }, hovertemplate: "step %{x}: %{y:.1%} inside the raw band<extra></extra>" },
      { type: "bar", name: "CRPS skill vs random walk", meta: "step-skill", x: b.step, y: b.crps_skill, yaxis: "y2",
        marker: { color: b.crps_skill.map((v) => (v !== null && v > 0 ? "#16a34a" : "#dc2626")) },
        customdata: b.dm_pvalue, hovertemplate: "step %{x}: skill %{y:+.1%} (DM p %{customdata:.2g})<extra></extra>" },
    ];
    const nominal = t.nominal_coverage;
    Plotly.react("by-step", traces, {
      ...legendLayout(), hovermode: "x unified",
      xaxis: { title: { text: "horizon step (candles ahead)" }, anchor: "y2" },  // ticks under the skill pane
      yaxis: { domain: [0.45, 1], range: [0, 1], tickformat: ".0%", title: { text: "inside p10–p90" } },
      yaxis2: { domain: [0, 0.35], tickformat: "+.0%", title: { text: "CRPS skill" }, zeroline: true },
      shapes: [{ type: "line", xref: "paper", yref: "y", x0: 0, x1: 1, y0: nominal, y1: nominal,
        line: { dash: "dash", color: "#dc2626" } }],
      annotations: [{ xref: "paper", yref: "y", x: 1, y: nominal, text: `nominal ${pct(nominal)}`, showarrow: false,
        xanchor: "right", yanchor: "bottom", font: { color: "#dc2626" } }],
    }, PLOT_CONFIG);
  }

  // -- symbol: candles + fan + realised candles + volume, with model and timeframe toggles ----------------------
  // The level box of the symbol page: P(touch) from the sample paths (GET /symbol/{symbol}/touch), with the paths
  // that touch the level drawn over the fan (meta "touching") and the level as a dotted line (meta "level").
  function askPaths(symbol, getSeries, redraw) {
    const form = document.getElementById("ask-form");
    const result = document.getElementById("ask-result");
    let shown = null;  // the last answer, for the series it was asked of
    form.hidden = false;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const s = getSeries();
      if (!s) return;
      const params = new URLSearchParams({ level: document.getElementById("ask-level").value,
        model_name: s.model_name, timeframe: s.timeframe });
      const response = await fetch(`/symbol/${encodeURIComponent(symbol)}/touch?${params}`);
      const body = await response.json();
      if (!response.ok) {
        shown = null;
        result.textContent = body.detail;
        result.dataset.probability = "";
        redraw();
        return;
      }
      shown = { key: s.model_name + "|" + s.timeframe, body };
      const d = decimalsFor(body.last_close);
      result.textContent = `P(touch ${body.side} ${fmt(body.level, d)} by ${utcText(body.by, s.timeframe)}) = ` +
        `${(body.probability * 100).toFixed(1)}% ± ${(body.standard_error * 100).toFixed(1)}% ` +
        `(${body.touching.length} of ${body.paths} sample paths touch it, highlighted; judged on ${body.basis === "close" ? "closes" : "highs and lows"}).`;
      result.dataset.probability = String(body.probability);
      redraw();
    });
    return (s, anchor) => {  // the traces to add to the chart of series s
      if (!shown || !s || shown.key !== s.model_name + "|" + s.timeframe) return [];
      const body = shown.body;
      const x = [anchor, ...body.target_timestamps].map(utc);
      const paths = body.touching_paths.map((path, i) => ({ type: "scatter", mode: "lines", x,
        y: [body.last_close, ...path], meta: "touching", name: "paths touching the level", legendgroup: "touching",
        showlegend: i === 0, line: { color: "rgba(220, 38, 38, 0.55)", width: 1 }, hoverinfo: "skip" }));
      return [...paths, { type: "scatter", mode: "lines", x: [x[0], x[x.length - 1]], y: [body.level, body.level],
        meta: "level", name: "level", line: { dash: "dot", color: "#dc2626", width: 1.5 }, hoverinfo: "skip" }];
    };
  }

  function symbolPage() {
    if (!config.selected) return;
    let model = config.selected.model;
    let timeframe = config.selected.timeframe;
    const modelButtons = document.querySelectorAll("#model-toggle button");
    const tfButtons = document.querySelectorAll("#timeframe-toggle button");
    const modelsAt = (tf) => data.models.filter((m) => data.series[m + "|" + tf]);

    function draw() {
      const s = model ? data.series[model + "|" + timeframe] : null;
      const candlesOnly = s ? null : data.no_forecast[timeframe];
      const c = s ? s.candles : candlesOnly.candles;
      const realised = s ? s.realised : null;
      const unit = unitOf(data);
      const traces = [candleTrace(c, "candles", "candles")];
      if (s) {
        const anchor = c.ts.length ? c.ts[c.ts.length - 1] : null;
        traces.push(...fanTraces(s, { anchor, legend: true, unit: data.quote_currency }));
        traces.push(...askedTraces(s, anchor));
        if (realised.ts.length) traces.push(candleTrace(realised, "realised", "realised after as_of", REALISED));
      }
      const volumeTs = [...c.ts, ...(realised ? realised.ts : [])];
      const volume = [...c.volume, ...(realised ? realised.volume : [])];
      const hasVolume = volume.some((v) => v !== null && v > 0);
      if (hasVolume) {
        traces.push({ type: "bar", x: volumeTs.map(utc), y: volume, meta: "volume", name: "volume", yaxis: "y2",
          marker: { color: "rgba(107, 114, 128, 0.45)" }, showlegend: false,
          hovertemplate: "volume %{y:,.4~s}<extra></extra>" });
      }
      const shown = [...c.ts, ...(s ? s.target_timestamps : []), ...(realised ? realised.ts : [])];
      const layout = {
        hovermode: "x unified",
        xaxis: { rangeslider: { visible: false }, title: { text: "UTC (candle open time)" },
          anchor: hasVolume ? "y2" : "y",  // ticks and title under the volume pane, not across it
          rangebreaks: data.calendar === "24/7" ? [] : rangeBreaks(shown, timeframe) },
        yaxis: { title: { text: `${data.symbol} (${unit})` }, domain: hasVolume ? [0.25, 1] : [0, 1] },
        ...legendLayout(),
        shapes: s ? [{ type: "line", xref: "x", yref: "paper", x0: utc(s.as_of), x1: utc(s.as_of), y0: 0, y1: 1,
          line: { dash: "dot", color: "#9ca3af", width: 1 } }] : [],
      };
      if (hasVolume) layout.yaxis2 = { domain: [0, 0.18], title: { text: "volume" }, showgrid: false };
      Plotly.react("fan", traces, layout, PLOT_CONFIG);
      document.getElementById("ask-form").hidden = !s;

      const status = document.getElementById("status");
      if (s) {
        const last = s.target_timestamps[s.target_timestamps.length - 1];
        const mode = isReplay(s)
          ? `Historical replay: this forecast was made as of ${utcText(s.as_of)} from stored market data, not live prices. `
          : `Forecast as of ${utcText(s.as_of)}. `;
        const horizon = `Horizon: ${s.target_timestamps.length} × ${timeframe} candles, to the one opening ` +
          `${utcText(last, timeframe)}. `;
        const seen = realised.ts.length
          ? `Realised candles after as_of: ${realised.ts.length} of ${s.target_timestamps.length}, drawn in orange. `
          : "";
        status.textContent = mode + horizon + seen + `Model ${s.model_name}` +
          `${s.model_version ? " " + s.model_version : ""}, generated ${utcText(s.generated_at)} ` +
          `(${ago(s.generated_at)}); last close ${fmt(s.last_close, decimalsFor(s.last_close))} ${unit}.` +
          (config.stale ? " Stale: the database is unreachable, so a newer forecast may exist." : "");
        status.dataset.generatedAt = s.generated_at;
        const d = decimalsFor(s.last_close);
        const realisedAt = {};
        realised.ts.forEach((t, i) => { realisedAt[t] = realised.close[i]; });
        const rows = s.target_timestamps.map((t, i) =>
          `<tr><td>${utcText(t, timeframe)}</td><td>${fmt(s.p10[i], d)}</td><td>${fmt(s.p50[i], d)}</td>` +
          `<td>${fmt(s.p90[i], d)}</td><td>${t in realisedAt ? fmt(realisedAt[t], d) : "–"}</td></tr>`);
        document.querySelector("#values tbody").innerHTML = rows.join("");
        document.getElementById("values-box").hidden = false;
        trackRecord(s.track_record, timeframe);
        stepRecord(s.by_step, s.track_record);
      } else {
        trackRecord(null, timeframe);
        stepRecord(null, null);
        status.textContent = `No ${timeframe} forecast of ${data.symbol}: ${candlesOnly.reason}. ` +
          `Its ${timeframe} candles run ${utcText(candlesOnly.first, timeframe)} → ${utcText(candlesOnly.last, timeframe)}` +
          ` (the newest ${c.ts.length} are drawn).`;
        status.dataset.generatedAt = "";
        document.getElementById("values-box").hidden = true;
      }

      for (const b of modelButtons) {
        b.classList.toggle("active", b.dataset.model === model);
      }
      for (const b of tfButtons) {
        b.classList.toggle("active", b.dataset.timeframe === timeframe);
        const tf = b.dataset.timeframe;  // the model's own timeframes, and candles without a forecast
        b.disabled = !data.no_forecast[tf] && !(model ? data.series[model + "|" + tf] : modelsAt(tf).length);
      }
      const url = new URL(window.location.href);
      if (model) url.searchParams.set("model_name", model);
      else url.searchParams.delete("model_name");
      url.searchParams.set("timeframe", timeframe);
      window.history.replaceState(null, "", url);
    }

    const askedTraces = askPaths(data.symbol, () => (model ? data.series[model + "|" + timeframe] : null), draw);
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
        if (!(model && data.series[model + "|" + timeframe])) {
          const others = modelsAt(timeframe);
          model = others.length ? others[0] : null;
        }
        draw();
      });
    }
    draw();
    onResize(draw);
  }

  // -- evaluation: coverage per instrument and model, calibration per model ----------------------------------
  function evaluation() {
    const wrap = document.getElementById("scores-wrap");
    const cue = document.getElementById("scores-cue");
    const updateCue = () => {
      if (wrap && cue) cue.hidden = wrap.scrollWidth <= wrap.clientWidth + 1;
    };
    if (!data.rows.length) return;
    function draw() {
      const groups = {};
      for (const r of data.rows) {
        const name = r.model_name + " " + r.timeframe;
        const g = (groups[name] = groups[name] || { x: [], y: [], raw: [], up: [], down: [] });
        g.x.push(r.symbol);
        g.y.push(r.coverage);
        g.raw.push(r.coverage_raw);
        const known = r.coverage !== null && r.coverage_low !== null && r.coverage_high !== null;
        g.up.push(known ? r.coverage_high - r.coverage : null);
        g.down.push(known ? r.coverage - r.coverage_low : null);
      }
      // served (calibrated) band as bars with their 90% interval; the model's raw band as a marker on the same bar
      const coverage = Object.entries(groups).map(([name, g], i) =>
        ({ type: "bar", name: name + " served", meta: "coverage:" + name, x: g.x, y: g.y, offsetgroup: String(i),
           error_y: { type: "data", symmetric: false, array: g.up, arrayminus: g.down, color: "#374151" },
           legendgroup: name, hovertemplate: "%{x} served: %{y:.1%}<extra>" + name + "</extra>" }));
      coverage.push(...Object.entries(groups).map(([name, g], i) =>
        ({ type: "scatter", mode: "markers", name: name + " raw", meta: "coverage_raw:" + name, x: g.x, y: g.raw,
           offsetgroup: String(i), legendgroup: name, marker: { symbol: "diamond", size: 9, color: "#111827" },
           hovertemplate: "%{x} raw: %{y:.1%}<extra>" + name + "</extra>" })));
      Plotly.react("coverage", coverage, {
        ...legendLayout(), barmode: "group", scattermode: "group",
        yaxis: { range: [0, 1], tickformat: ".0%", title: { text: "inside p10–p90" } },
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
      Plotly.react("calibration", calibration, {
        ...legendLayout(),
        xaxis: { range: [0, 1], tickformat: ".0%", title: { text: "forecast quantile (nominal)" } },
        yaxis: { range: [0, 1], tickformat: ".0%", title: { text: "realised below it" } },
      }, PLOT_CONFIG);

      // PIT histogram per model and timeframe: density of the outcomes' PITs per tenth (1 = calibrated)
      const withPit = data.calibration.filter((c) => c.n_pit > 0);
      const pitNote = document.getElementById("pit-note");
      document.getElementById("pit").hidden = !withPit.length;
      pitNote.dataset.none = withPit.length ? "" : "No scored step has a PIT yet (forecasts without sample paths, " +
        "or scored before PITs were kept: `candlecast score --rescore` computes them).";
      if (!withPit.length && !pitNote.dataset.said) {
        pitNote.textContent += " " + pitNote.dataset.none;
        pitNote.dataset.said = "1";
      }
      const bins = withPit.length ? withPit[0].pit_counts.length : 10;
      const centres = Array.from({ length: bins }, (_, i) => (i + 0.5) / bins);
      const pit = withPit.map((c) => ({
        type: "bar", name: `${c.model_name} ${c.timeframe} (n=${c.n_pit})`, meta: "pit:" + c.model_name + " " + c.timeframe,
        x: centres, y: c.pit_counts.map((n) => (n / c.n_pit) * bins), customdata: c.pit_counts,
        hovertemplate: "%{x:.2f}: density %{y:.2f} (%{customdata} steps)<extra></extra>",
      }));
      pit.push({ type: "scatter", mode: "lines", name: "calibrated", meta: "pit-uniform", x: [0, 1], y: [1, 1],
        line: { dash: "dot", color: "#9ca3af" } });
      if (withPit.length) Plotly.react("pit", pit, {
        ...legendLayout(), barmode: "group",
        xaxis: { range: [0, 1], dtick: 1 / bins, tickformat: ".1f", title: { text: "PIT (where the close fell among the paths)" } },
        yaxis: { rangemode: "tozero", title: { text: "density (1 = uniform)" } },
      }, PLOT_CONFIG);
      pitNote.dataset.steps = String(withPit.reduce((a, c) => a + c.n_pit, 0));

      // touch probabilities: predicted vs observed frequency per bin, marker area by count
      const touches = data.path_scores || [];
      if (touches.length && document.getElementById("touch-reliability")) {
        const reliability = touches.map((t) => {
          const r = t.reliability;
          const full = r.count.map((n, i) => i).filter((i) => r.count[i] > 0);
          return {
            type: "scatter", mode: "lines+markers", name: `${t.model_name} ${t.timeframe} (n=${t.questions})`,
            meta: "touch:" + t.model_name + " " + t.timeframe,
            x: full.map((i) => r.mean_predicted[i]), y: full.map((i) => r.observed[i]),
            customdata: full.map((i) => r.count[i]),
            marker: { size: full.map((i) => 6 + 4 * Math.log10(r.count[i])) },
            hovertemplate: "predicted %{x:.1%}, touched %{y:.1%} (n=%{customdata})<extra>%{meta}</extra>",
          };
        });
        reliability.push({ type: "scatter", mode: "lines", name: "reliable", meta: "touch-diagonal", x: [0, 1],
          y: [0, 1], line: { dash: "dot", color: "#9ca3af" } });
        Plotly.react("touch-reliability", reliability, {
          ...legendLayout(),
          xaxis: { range: [0, 1], tickformat: ".0%", title: { text: "predicted touch probability" } },
          yaxis: { range: [0, 1], tickformat: ".0%", title: { text: "levels touched" } },
        }, PLOT_CONFIG);
      }
      updateCue();
    }
    draw();
    onResize(draw);
    window.addEventListener("resize", updateCue);
  }

  const pages = { home, symbol: symbolPage, evaluation };
  const run = pages[document.body.dataset.page];
  if (run) run();
  document.body.dataset.ready = "1";
})();
