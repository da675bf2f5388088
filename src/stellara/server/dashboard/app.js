// Stellara dashboard: polls /dashboard/data every 2 s while the tab is visible and redraws;
// the experiments panel's feed, which reads the SQL store, every 5 s.
// No libraries: charts are drawn on <canvas>, every text goes in through textContent.
"use strict";

(() => {
  const POLL_MS = 2000;
  const EXPERIMENTS_EVERY_MS = 5000;
  const FETCH_TIMEOUT_MS = 5000;
  const WINDOW_S = 300; // per-provider rates: the last five minutes of polls
  const SERIES_STEP_S = 10; // the width of the server's time-series buckets
  const PALETTE = ["#5b9cf5", "#f5c451", "#3ecf8e", "#c17df5", "#ef7b5b", "#4fd1d9", "#e36fb2"];
  const TONE = {
    healthy: "ok", closed: "ok",
    degraded: "warn", half_open: "warn",
    unhealthy: "bad", open: "bad",
    running: "ok", paused: "warn", stopped: "none",
    better: "ok", worse: "bad", no_difference_yet: "none",
  };

  const $ = (id) => document.getElementById(id);
  const css = getComputedStyle(document.documentElement);
  const color = (name) => css.getPropertyValue(name).trim();

  // Per provider: [time, requests/s] and [time, errors/s] points computed from the counters of
  // successive polls, so the lines move at the polling pace whatever the server's buckets are.
  const rates = new Map();
  let previous = null;
  let timer = null;
  let polling = false;
  let last = null;
  let colors = new Map(); // provider id → line colour, by sorted id
  let experimentsAt = 0; // when the experiments' feed was last asked for (ms)

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmtNumber(value, digits = 0) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    return value.toLocaleString("en-US", {
      minimumFractionDigits: digits, maximumFractionDigits: digits,
    });
  }

  function fmtUsd(value) {
    if (!value) return "$0";
    return "$" + fmtNumber(value, value < 1 ? 4 : 2);
  }

  function fmtPercent(share) {
    return share === null || share === undefined ? "–" : fmtNumber(share * 100, 1) + " %";
  }

  function fmtMs(value) {
    return value === null || value === undefined ? "–" : fmtNumber(value, value < 10 ? 1 : 0);
  }

  function fmtDuration(seconds) {
    const s = Math.floor(seconds);
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    return m ? `${m}m ${s % 60}s` : `${s % 60}s`;
  }

  function fmtClock(epochS) {
    return new Date(epochS * 1000).toLocaleTimeString("en-GB", { hour12: false });
  }

  // "quota:daily:cost_usd" → "daily cost", "rate:requests" → "rate requests"
  function limitLabel(name) {
    const parts = name.split(":");
    if (parts[0] === "quota") parts.shift();
    return parts.join(" ").replace("cost_usd", "cost");
  }

  function fmtAmount(value, name) {
    return name.endsWith("cost_usd") ? fmtUsd(value) : fmtNumber(value, value % 1 ? 1 : 0);
  }

  function sum(values) {
    return values.reduce((total, value) => total + (Number(value) || 0), 0);
  }

  function pill(state, label) {
    const text = label ?? (state ? String(state).replace("_", "-") : "n/a");
    return el("span", "pill " + (TONE[state] || "none"), text);
  }

  function replaceChildren(parent, children, emptyId) {
    parent.replaceChildren(...children);
    $(emptyId).hidden = children.length > 0;
  }

  // ---- charts -------------------------------------------------------------------------------

  // A y axis from 0 in 1-2-5 steps: [top, step].
  function niceScale(max) {
    const rough = (max > 0 ? max : 1) / 4;
    const power = 10 ** Math.floor(Math.log10(rough));
    const step = [1, 2, 5, 10].map((m) => m * power).find((m) => m >= rough);
    return [Math.max(1, Math.ceil(max / step)) * step, step];
  }

  // lines: [{label, color, points: [[epochS, value|null], ...], dashed}]
  function drawChart(canvas, lines, prefix) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px " + color("--font");

    const points = lines.flatMap((line) => line.points.filter((p) => p[1] !== null));
    const pad = { left: 52, right: 10, top: 8, bottom: 20 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    if (points.length === 0) {
      ctx.fillStyle = color("--muted");
      ctx.textAlign = "center";
      ctx.fillText("waiting for traffic…", width / 2, height / 2);
      return;
    }
    let t0 = Math.min(...points.map((p) => p[0]));
    const t1 = Math.max(...points.map((p) => p[0]));
    if (t1 - t0 < 10) t0 = t1 - 10;
    const [top, step] = niceScale(Math.max(...points.map((p) => p[1])));
    const decimals = Math.max(0, -Math.floor(Math.log10(step)));
    const x = (t) => pad.left + ((t - t0) / (t1 - t0)) * plotW;
    const y = (v) => pad.top + plotH - (v / top) * plotH;

    ctx.strokeStyle = color("--grid");
    ctx.fillStyle = color("--muted");
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let value = 0; value <= top + step / 2; value += step) {
      const yy = Math.round(y(value)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.left, yy);
      ctx.lineTo(width - pad.right, yy);
      ctx.stroke();
      ctx.fillText(prefix + value.toFixed(decimals), pad.left - 6, yy);
    }
    ctx.textBaseline = "top";
    for (let i = 0; i <= 3; i += 1) {
      const t = t0 + ((t1 - t0) * i) / 3;
      ctx.textAlign = i === 0 ? "left" : i === 3 ? "right" : "center";
      ctx.fillText(fmtClock(t), x(t), height - pad.bottom + 6);
    }

    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    for (const line of lines) {
      ctx.strokeStyle = line.color;
      ctx.setLineDash(line.dashed ? [5, 4] : []);
      ctx.beginPath();
      let drawing = false;
      for (const [t, v] of line.points) {
        if (v === null) {
          drawing = false;
          continue;
        }
        if (drawing) ctx.lineTo(x(t), y(v));
        else ctx.moveTo(x(t), y(v));
        drawing = true;
      }
      ctx.stroke();
      if (line.points.length === 1 && line.points[0][1] !== null) {
        ctx.fillStyle = line.color;
        ctx.beginPath();
        ctx.arc(x(line.points[0][0]), y(line.points[0][1]), 3, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
    ctx.setLineDash([]);
  }

  function legend(id, lines, format) {
    const items = lines.map((line) => {
      const item = el("span");
      const swatch = el("i", "swatch");
      swatch.style.background = line.color; // CSSOM, which the CSP allows (no style attribute)
      const latest = [...line.points].reverse().find((p) => p[1] !== null);
      item.append(swatch, line.label + " ", el("b", "", latest ? format(latest[1]) : "–"));
      return item;
    });
    $(id).replaceChildren(...items);
  }

  function chart(name, lines, format, prefix = "") {
    drawChart($("chart-" + name), lines, prefix);
    legend("legend-" + name, lines, format);
  }

  // ---- the server's time series ---------------------------------------------------------------

  // Cost per minute of each bucket; the last one is still filling, so it is divided by the
  // time it has covered so far (from one second on, not to spike at its start).
  function costRates(series, now) {
    const out = [];
    series.forEach((bucket, i) => {
      const next = series[i + 1];
      const width = next ? next.at - bucket.at : Math.min(now - bucket.at, SERIES_STEP_S);
      if (width >= 1) out.push([bucket.at + width, (bucket.cost_usd / width) * 60]);
    });
    return out;
  }

  // The series from its first bucket with traffic: ten quiet minutes are not worth the width.
  function activeSeries(series) {
    const first = series.findIndex((bucket) => bucket.requests > 0);
    return first < 0 ? [] : series.slice(first);
  }

  // ---- rendering ------------------------------------------------------------------------------

  function providerColors(ids) {
    const byId = new Map();
    [...ids].sort().forEach((id, i) => byId.set(id, PALETTE[i % PALETTE.length]));
    return byId;
  }

  // Requests, errors and cost of every public model: providers count attempts, not requests.
  function totals(monitoring) {
    const models = Object.values(monitoring.models || {});
    const total = (field) => sum(models.map((m) => m[field]));
    return { requests: total("requests"), errors: total("errors"), cost: total("cost_usd") };
  }

  // Appends this poll's rates per provider and answers the gateway's requests/s (null on the
  // first poll, or when counters went back: a monitoring reset).
  function trackRates(now, providers, requests) {
    const before = previous;
    previous = { time: now, providers, requests };
    const dt = before ? now - before.time : 0;
    if (!(dt > 0)) return null;
    for (const [id, stats] of Object.entries(providers)) {
      const old = before.providers[id] || { requests: 0, errors: 0 };
      const calls = (stats.requests || 0) - (old.requests || 0);
      const errors = (stats.errors || 0) - (old.errors || 0);
      if (calls < 0 || errors < 0) continue;
      const entry = rates.get(id) || { requests: [], errors: [] };
      entry.requests.push([now, calls / dt]);
      entry.errors.push([now, errors / dt]);
      for (const list of [entry.requests, entry.errors]) {
        while (list.length && list[0][0] < now - WINDOW_S) list.shift();
      }
      rates.set(id, entry);
    }
    return requests >= before.requests ? (requests - before.requests) / dt : null;
  }

  function renderKpis(data, total, currentRate) {
    const monitoring = data.monitoring || {};
    const series = monitoring.series || [];
    $("kpi-requests").textContent = fmtNumber(total.requests);
    $("kpi-errors").textContent = fmtNumber(total.errors);
    $("kpi-error-rate").textContent = total.requests
      ? fmtPercent(total.errors / total.requests)
      : "";
    $("kpi-rps").textContent = currentRate === null ? "–" : fmtNumber(currentRate, 1);
    const latest = [...series].reverse().find((b) => b.latency_ms_p50 !== null && b.requests);
    $("kpi-latency").textContent = latest
      ? `${fmtMs(latest.latency_ms_p50)} / ${fmtMs(latest.latency_ms_p95)}`
      : "–";
    $("kpi-cost").textContent = fmtUsd(total.cost);
    const cache = monitoring.cache || {};
    const hits = (cache.hits || 0) + (cache.semantic_hits || 0);
    const lookups = hits + (cache.misses || 0);
    $("kpi-cache").textContent = lookups ? fmtPercent(hits / lookups) : "–";
    $("kpi-retries").textContent =
      `${fmtNumber(monitoring.retries || 0)} / ${fmtNumber(monitoring.fallbacks || 0)}`;
    const rejections = (monitoring.limits || {}).rejections || {};
    $("kpi-rejections").textContent = fmtNumber(sum(Object.values(rejections)));
  }

  function renderCharts(data) {
    const series = activeSeries((data.monitoring || {}).series || []);
    const now = (data.server || {}).time;
    const perProvider = (field) =>
      [...rates.entries()].sort().map(([id, entry]) => ({
        label: id || "(none)", color: colors.get(id), points: entry[field],
      }));
    const perSecond = (v) => fmtNumber(v, v < 10 ? 1 : 0);
    chart("rps", perProvider("requests"), perSecond);
    chart("errors", perProvider("errors"), perSecond);
    // Each bucket is drawn where it ends (now, for the one still filling), as the cost line is.
    const end = (bucket) => Math.min(bucket.at + SERIES_STEP_S, now);
    chart("latency", [
      { label: "p50", color: PALETTE[0], points: series.map((b) => [end(b), b.latency_ms_p50]) },
      {
        label: "p95", color: PALETTE[1], dashed: true,
        points: series.map((b) => [end(b), b.latency_ms_p95]),
      },
    ], fmtMs);
    chart("cost", [
      { label: "USD/min", color: PALETTE[2], points: costRates(series, now) },
    ], (v) => "$" + fmtNumber(v, v < 0.01 ? 4 : 2), "$");
  }

  function renderProviders(data, providers) {
    const health = (data.health || {}).providers || {};
    const ids = [...new Set([...Object.keys(health), ...Object.keys(providers)])].sort();
    const rows = ids.map((id) => {
      const stats = providers[id] || {};
      const state = health[id] || {};
      const latency = stats.latency_ms || state.latency_ms || {};
      const row = el("tr");
      row.dataset.testid = "provider-" + id;
      const name = el("td");
      const swatch = el("i", "swatch");
      swatch.style.background = colors.get(id) || color("--muted");
      name.append(swatch, " " + (id || "(none)"));
      const healthCell = el("td");
      healthCell.append(state.status ? pill(state.status) : el("span", "muted", "—"));
      if (state.reason && state.reason !== "ok") {
        healthCell.append(" ", el("span", "muted", state.reason));
      }
      const breakerCell = el("td");
      breakerCell.append(state.status ? pill(state.breaker || "closed") : el("span", "muted", "—"));
      const requests = stats.requests || 0;
      const lastError = (state.last_error || {}).code || "";
      row.append(
        name, healthCell, breakerCell,
        el("td", "num", fmtNumber(requests)),
        el("td", "num", fmtNumber(stats.errors || 0)),
        el("td", "num", requests ? fmtPercent((stats.errors || 0) / requests) : "–"),
        el("td", "num", fmtMs(latency.p50)),
        el("td", "num", fmtMs(latency.p95)),
        el("td", "code", lastError),
      );
      return row;
    });
    replaceChildren($("providers"), rows, "providers-empty");
  }

  function renderBreakers(data) {
    const breakers = (data.health || {}).breakers || {};
    const items = Object.entries(breakers).map(([id, breaker]) => {
      const item = el("li");
      item.dataset.testid = "breaker-" + id;
      const counts = `${breaker.failures_in_window || 0}/${breaker.calls_in_window || 0} failed`;
      item.append(el("span", "id", id), el("span", "muted", counts), pill(breaker.state));
      return item;
    });
    replaceChildren($("breakers"), items, "breakers-empty");
    const history = (((data.monitoring || {}).breakers || {}).history || []).slice(-8).reverse();
    const changes = history.map((change) => {
      const item = el("li");
      const when = change.at ? fmtClock(change.at) : "";
      item.append(
        el("span", "when", when), el("span", "id", change.breaker || ""),
        pill(change.from), "→", pill(change.to),
      );
      return item;
    });
    replaceChildren($("breaker-history"), changes, "history-empty");
  }

  // A bar of used/limit; a limit's bar turns amber at 70 % and red at 90 %, a hit rate's never.
  function meter(label, used, limit, amount, isLimit = true) {
    const row = el("div", "meter");
    const share = limit > 0 ? Math.min(1, used / limit) : 0;
    const tone = !isLimit ? "" : share >= 0.9 ? " bad" : share >= 0.7 ? " warn" : "";
    const fill = el("div", "fill" + tone);
    fill.style.width = (share * 100).toFixed(1) + "%";
    const track = el("div", "track");
    track.append(fill);
    row.append(el("span", "what", label), track, el("span", "amount", amount));
    return row;
  }

  function renderUsers(data) {
    const top = ((data.monitoring || {}).limits || {}).top_users || [];
    const limits = new Map((data.limits || []).map((entry) => [entry.user, entry]));
    const cards = top.map((user) => {
      const card = el("article", "user");
      card.dataset.testid = "user-" + user.user;
      const entry = limits.get(user.user) || { limits: [] };
      const head = el("header");
      head.append(el("span", "name", user.user), el("span", "muted", entry.tier || ""));
      const facts = `${fmtNumber(user.requests || 0)} req · ${fmtUsd(user.cost_usd || 0)}` +
        ` · ${fmtNumber(user.rejections || 0)} refused`;
      head.append(el("span", "facts", facts));
      card.append(head);
      for (const bar of entry.limits) {
        const amount = `${fmtAmount(bar.used, bar.name)} / ${fmtAmount(bar.limit, bar.name)}`;
        const row = meter(limitLabel(bar.name), bar.used, bar.limit, amount);
        row.title = bar.name;
        card.append(row);
      }
      if (entry.error) card.append(el("p", "empty", entry.error));
      else if (!entry.limits.length) card.append(el("p", "empty", "No limits apply."));
      return card;
    });
    replaceChildren($("users"), cards, "users-empty");
  }

  function renderCache(data) {
    const levels = (data.cache || {}).levels || {};
    const blocks = Object.entries(levels).map(([level, stats]) => {
      const block = el("div", "cache-level");
      block.dataset.testid = "cache-" + level;
      const lookups = stats.lookups ?? (stats.hits || 0) + (stats.misses || 0);
      const rate = stats.hit_rate || 0;
      const detail = `${fmtPercent(rate)} of ${fmtNumber(lookups)}`;
      block.append(meter(level.toUpperCase(), rate, 1, detail, false));
      const facts = [];
      if (stats.entries !== undefined) facts.push(`${fmtNumber(stats.entries)} entries`);
      if (stats.evictions) facts.push(`${fmtNumber(stats.evictions)} evicted`);
      if (stats.errors) facts.push(`${fmtNumber(stats.errors)} errors`);
      if (stats.guard_trips) facts.push(`${fmtNumber(stats.guard_trips)} guard trips`);
      if (facts.length) block.append(el("p", "muted small", facts.join(" · ")));
      return block;
    });
    if (data.cache) {
      const answers = (data.monitoring || {}).cache || {};
      const line = `Scope ${data.cache.scope} · answers: ${fmtNumber(answers.hits || 0)} exact, ` +
        `${fmtNumber(answers.semantic_hits || 0)} semantic, ${fmtNumber(answers.misses || 0)} missed`;
      blocks.push(el("p", "muted", line));
    }
    replaceChildren($("cache"), blocks, "cache-empty");
  }

  // ---- experiments ----------------------------------------------------------------------------

  const VERDICT_RULE = "Decided once the interval leaves out 0, with at least 30 values " +
    "on each side; the interval stays valid however often it is read.";

  // Costs per request are fractions of a cent: two significant digits, never rounded to $0.
  function fmtCost(value) {
    if (value === null || value === undefined) return "–";
    if (value >= 0.01) return fmtUsd(value);
    return "$" + value.toLocaleString("en-US", { maximumSignificantDigits: 2 });
  }

  function fmtStat(value) {
    if (value === null || value === undefined) return "–";
    const size = Math.abs(value);
    return fmtNumber(value, size >= 100 ? 0 : size >= 10 ? 1 : size >= 1 ? 2 : 3);
  }

  // " [lo, hi]": the always-valid 95 % interval, when there is one.
  function fmtInterval(ci) {
    return ci ? ` [${fmtStat(ci[0])}, ${fmtStat(ci[1])}]` : "";
  }

  // A metric's mean ± its interval over n values, and for a variant other than the control
  // the difference to the control with its interval and verdict.
  function metricCell(variant, metric) {
    const cell = el("td", "metric");
    const estimate = variant.metrics[metric] || { n: 0, mean: null, ci95: null };
    cell.append(
      el("div", "mean", fmtStat(estimate.mean) + fmtInterval(estimate.ci95)),
      el("div", "muted small", `n ${fmtNumber(estimate.n)}`),
    );
    const versus = (variant.vs_control || {})[metric];
    if (versus) {
      const sign = versus.diff > 0 ? "+" : "";
      const line = el("div", "versus");
      line.dataset.testid = "verdict";
      const verdict = pill(versus.verdict, versus.verdict.replaceAll("_", " "));
      verdict.title = VERDICT_RULE;
      line.append(
        el("span", "muted", `vs control ${sign}${fmtStat(versus.diff)}${fmtInterval(versus.ci95)}`),
        verdict,
      );
      cell.append(line);
    }
    return cell;
  }

  function variantRow(experiment, variant, metrics) {
    const row = el("tr");
    row.dataset.testid = `variant-${experiment.experiment}-${variant.name}`;
    const name = el("td", "variant", variant.name);
    if (variant.name === experiment.control && variant.name !== "control") {
      name.append(el("span", "muted", " (control)"));
    }
    row.append(
      name,
      el("td", "num", fmtNumber(variant.share, 1) + " %"),
      el("td", "num", fmtNumber(variant.requests)),
      el("td", "num", variant.requests ? fmtPercent(variant.error_rate) : "–"),
      el("td", "num", fmtCost(variant.cost_usd_per_request)),
    );
    for (const metric of metrics) row.append(metricCell(variant, metric));
    return row;
  }

  function experimentCard(experiment) {
    const card = el("article", "experiment");
    card.dataset.testid = "experiment-" + experiment.experiment;
    const head = el("header");
    head.append(
      el("span", "name", experiment.experiment),
      el("span", "muted", `on ${experiment.model} · ${experiment.allocation}`),
      pill(experiment.status),
    );
    if (experiment.winner) head.append(el("span", "muted", "winner " + experiment.winner));
    const metrics = Object.keys((experiment.variants[0] || {}).metrics || {});
    const titles = [["Variant", ""], ["Share", "num"], ["Requests", "num"],
      ["Error rate", "num"], ["Cost/request", "num"], ...metrics.map((m) => [m, "metric"])];
    const headRow = el("tr");
    headRow.append(...titles.map(([title, className]) => el("th", className, title)));
    const thead = el("thead");
    thead.append(headRow);
    const tbody = el("tbody");
    tbody.append(...experiment.variants.map((v) => variantRow(experiment, v, metrics)));
    const table = el("table");
    table.append(thead, tbody);
    card.append(head, table);
    return card;
  }

  async function pollExperiments() {
    experimentsAt = Date.now();
    const problem = $("experiments-error");
    try {
      const response = await fetch("/dashboard/experiments", {
        cache: "no-store", credentials: "same-origin",
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const feed = await response.json();
      replaceChildren($("experiments"), feed.experiments.map(experimentCard), "experiments-empty");
      problem.hidden = true;
    } catch (error) { // the last panel stays, marked as stale
      problem.textContent = "Experiments not updated: " +
        (error.name === "TimeoutError" ? "timed out" : error.message);
      problem.hidden = false;
    }
  }

  function render(data) {
    const monitoring = data.monitoring || {};
    const providers = monitoring.providers || {};
    const server = data.server || {};
    const now = server.time || Date.now() / 1000;
    const total = totals(monitoring);
    const currentRate = trackRates(now, providers, total.requests);
    colors = providerColors(new Set([
      ...Object.keys(providers), ...Object.keys((data.health || {}).providers || {}),
    ]));
    $("version").textContent = server.version || "–";
    $("uptime").textContent = fmtDuration(server.uptime_s || 0);
    const processes = monitoring.processes || 1;
    $("processes").textContent = `${processes} process${processes === 1 ? "" : "es"}`;
    renderKpis(data, total, currentRate);
    renderCharts(data);
    renderProviders(data, providers);
    renderBreakers(data);
    renderUsers(data);
    renderCache(data);
  }

  // ---- polling --------------------------------------------------------------------------------

  function setStatus(state, text) {
    const status = $("status");
    status.dataset.state = state;
    status.textContent = text;
  }

  async function poll() {
    const controller = new AbortController();
    const timeout = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
    try {
      const response = await fetch("/dashboard/data", {
        cache: "no-store", credentials: "same-origin", signal: controller.signal,
      });
      if (response.status === 401) { // the session ended: back to the sign-in form
        window.location.assign("/dashboard");
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      last = await response.json();
      render(last);
      setStatus("live", "live · " + fmtClock(Date.now() / 1000));
    } catch (error) {
      setStatus("down", "no data: " + (error.name === "AbortError" ? "timed out" : error.message));
    } finally {
      clearTimeout(timeout);
    }
  }

  async function tick() {
    if (polling) return; // a poll is running: it schedules the next one itself
    polling = true;
    clearTimeout(timer);
    try {
      await poll();
      if (Date.now() - experimentsAt >= EXPERIMENTS_EVERY_MS) await pollExperiments();
    } finally {
      polling = false;
      if (document.hidden) setStatus("paused", "paused"); // hidden while the poll ran
      else timer = setTimeout(tick, POLL_MS);
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(timer);
      setStatus("paused", "paused");
    } else {
      tick();
    }
  });

  // Canvases follow the window's width; the last data is redrawn, not fetched again.
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      if (last) renderCharts(last);
    }, 150);
  });

  tick();
})();
