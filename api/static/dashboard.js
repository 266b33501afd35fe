"use strict";
// Polls /v1/slo and redraws. Every number shown is also in `data-raw` for tests and tools.
const REFRESH_MS = 3000;
let windowName = new URLSearchParams(location.search).get("window") || "5m";
let last = null;
const $ = (id) => document.getElementById(id);
const NS = "http://www.w3.org/2000/svg";

function pct(v, digits = 3) { return v == null ? "–" : (100 * v).toFixed(digits) + " %"; }
function secs(v) { return v == null ? "–" : v < 1 ? (1000 * v).toFixed(0) + " ms" : v.toFixed(2) + " s"; }
function num(v, digits = 0) { return v == null ? "–" : Number(v).toFixed(digits); }
function set(id, text, raw) {
  const el = $(id); el.textContent = text;
  if (raw !== undefined) el.dataset.raw = JSON.stringify(raw);
}
function tone(id, state) { $(id).className = "tile " + state; }

function svg(el, children) { el.replaceChildren(...children); }
function node(tag, attrs, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

// Grouped bars: series = [{values, color, label}], labels under each group.
function bars(el, labels, series, opts = {}) {
  const W = 600, H = 220, L = 40, B = 24, T = 18;
  const max = opts.max || Math.max(1e-9, ...series.flatMap((s) => s.values.filter((v) => v != null)));
  const gw = (W - L - 8) / labels.length, bw = (gw - 4) / series.length;
  const y = (v) => T + (H - B - T) * (1 - v / max);
  const out = [node("line", { x1: L, x2: W, y1: H - B, y2: H - B, stroke: "#2d333b" })];
  for (const f of [0.5, 1]) out.push(node("text", { x: 2, y: y(max * f) + 4 }, opts.fmt ? opts.fmt(max * f) : (max * f).toFixed(2)));
  labels.forEach((label, i) => {
    series.forEach((s, j) => {
      const v = s.values[i] || 0;
      out.push(node("rect", { x: L + i * gw + 2 + j * bw, y: y(v), width: Math.max(1, bw - 1), height: H - B - y(v), fill: s.color }));
    });
    if (labels.length <= 12 || i % 2 === 0) out.push(node("text", { x: L + i * gw + gw / 2, y: H - 8, "text-anchor": "middle" }, label));
  });
  series.forEach((s, j) => out.push(node("text", { x: W - 150, y: 12 + j * 13, fill: s.color, style: "fill:" + s.color }, "■ " + s.label)));
  svg(el, out);
}

const WINDOWS = ["5m", "1h", "24h"];
const UNKNOWN = "unknown";

function latencyChart(data) {
  const el = $("latency-chart"), W = 600, L = 60, objective = data.objectives.latency_s || 2;
  const max = Math.max(objective * 1.25, ...WINDOWS.map((w) => data.windows[w].latency_s.p99 || 0));
  const x = (v) => L + (W - L - 20) * v / max;
  const out = [];
  const colors = { p50: "#3fb950", p95: "#d29922", p99: "#f85149" };
  WINDOWS.forEach((w, i) => {
    const lat = data.windows[w].latency_s;
    out.push(node("text", { x: 4, y: 30 + i * 64 }, w));
    ["p50", "p95", "p99"].forEach((p, j) => {
      const v = lat[p] || 0, yy = 16 + i * 64 + j * 16;
      out.push(node("rect", { x: L, y: yy, width: Math.max(1, x(v) - L), height: 12, fill: colors[p] }));
      out.push(node("text", { x: x(v) + 4, y: yy + 10 }, p + " " + secs(lat[p])));
    });
  });
  out.push(node("line", { x1: x(objective), x2: x(objective), y1: 8, y2: 212, stroke: "#f85149", "stroke-dasharray": "4 3" }));
  out.push(node("text", { x: x(objective) - 4, y: 216, "text-anchor": "end" }, "objective " + objective + " s"));
  svg(el, out);
}

function timelineChart(data) {
  const t = data.timeline || [];
  bars($("timeline-chart"), t.map((m, i) => (i % 10 === 0 ? "-" + (t.length - i) + "m" : "")),
    [{ values: t.map((m) => m.requests), color: "#58a6ff", label: "requests" },
     { values: t.map((m) => m.errors_5xx), color: "#f85149", label: "5xx" }],
    { fmt: (v) => v.toFixed(0) });
}

// Prometheus down: every number it holds is unknown, said so, never shown as 100 %.
function renderVersions(versions) {
  // One row per version serving in the window: what a canary is judged on, beside production.
  $("versions-table").tBodies[0].replaceChildren(...Object.entries(versions || {}).map(([version, v]) => {
    const tr = document.createElement("tr");
    tr.id = "version-" + version;
    tr.dataset.raw = JSON.stringify(v);
    const ci = v.reviewed_accuracy_95ci;
    const cells = [
      "v" + version,
      String(v.images),
      pct(v.review_rate, 1),
      num(v.model_ms_per_image, 3),
      String(v.reviewed),
      v.reviewed ? `${pct(v.reviewed_accuracy, 1)} (${pct(ci[0], 1)} – ${pct(ci[1], 1)})` : "none reviewed yet",
    ];
    for (const text of cells) {
      const td = document.createElement("td"); td.textContent = text; tr.appendChild(td);
    }
    return tr;
  }));
}

function renderUnknownWindows(reason) {
  for (const id of ["availability", "p99", "throughput", "review-rate", "drift-state", "budget"]) set(id, UNKNOWN, null);
  for (const id of ["availability-sub", "latency-sub", "throughput-sub", "review-sub", "drift-sub"]) set(id, reason);
  $("budget-bar").style.width = "0";
  for (const id of ["tile-availability", "tile-latency", "tile-throughput", "tile-review", "tile-drift"]) tone(id, "unknown");
  $("slo-table").tBodies[0].replaceChildren();
  $("versions-table").tBodies[0].replaceChildren();
  for (const id of ["latency-chart", "timeline-chart", "class-chart", "confidence-chart"]) svg($(id), [node("text", { x: 10, y: 20 }, UNKNOWN + ": " + reason)]);
}

function renderWindows(data) {
  const w = data.windows[windowName], obj = data.objectives, now = data.current;
  renderVersions(w.versions);
  set("availability", w.availability == null ? "no traffic" : pct(w.availability), w.availability);
  set("availability-sub", `objective ${pct(obj.availability, 2)} · ${w.requests} requests, ${w.errors_5xx} 5xx`);
  const budget = w.error_budget_remaining;
  set("budget", budget == null ? "error budget: no traffic" : `error budget left ${pct(budget, 1)} · burn rate ${num(w.burn_rate, 1)}×`, budget);
  $("budget-bar").style.width = (budget == null ? 1 : Math.max(0, Math.min(1, budget))) * 100 + "%";
  $("budget-bar").style.background = budget == null || budget > 0.5 ? "var(--ok)" : budget > 0 ? "var(--warn)" : "var(--bad)";
  tone("tile-availability", w.availability == null ? "" : w.availability >= obj.availability ? "ok" : budget > 0 ? "warn" : "bad");

  set("p99", secs(w.latency_s.p99), w.latency_s.p99);
  set("latency-sub", `p50 ${secs(w.latency_s.p50)} · p95 ${secs(w.latency_s.p95)} · ${pct(w.latency_within_objective, 2)} within ${obj.latency_s} s`);
  tone("tile-latency", w.latency_s.p99 == null ? "" : w.latency_s.p99 <= obj.latency_s ? "ok" : "bad");

  set("throughput", num(now.throughput_1m_rps, 2) + " req/s", now.throughput_1m_rps);
  set("throughput-sub", `last minute · ${num(w.throughput_rps, 2)} req/s over ${windowName} · ${w.predictions} predictions · ${w.sync_fallbacks} sync→202 · ${Object.values(w.rejections).reduce((a, b) => a + b, 0)} rejected`);

  // Per envelope first: a sorting office counts letters sent to a person, not digits.
  const reasons = Object.entries(w.postcode_review_reasons).map(([k, n]) => `${k} ${n}`).join(", ");
  const envelopes = w.postcodes > 0;
  set("review-rate", pct(envelopes ? w.postcode_review_rate : w.review_rate, 1),
    envelopes ? w.postcode_review_rate : w.review_rate);
  set("review-sub", (envelopes
    ? `${w.postcodes_needs_review} of ${w.postcodes} envelopes to a person${reasons ? ` (${reasons})` : ""} · `
    : "no postal codes in the window · ") + `digits: ${w.needs_review} of ${w.predictions}`);

  const d = w.drift;
  const label = { drifting: "DRIFTING", stable: "stable", usual_mix: "usual mix", insufficient_data: "too few samples" }[d.state];
  set("drift-state", label, d.state);
  set("drift-sub", d.reference ? `PSI ${num(d.psi, 3)} vs training · ${num(d.baseline_psi, 3)} vs the day before (threshold ${d.threshold}) · n=${d.samples}` : "no reference exported by the workers");
  $("drift-sub").dataset.psi = JSON.stringify(d.psi);
  tone("tile-drift", d.state === "drifting" ? "bad" : d.state === "insufficient_data" ? "" : "ok");
  bars($("class-chart"), ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
    [{ values: d.observed || [], color: "#58a6ff", label: "observed" },
     { values: d.baseline || [], color: "#d29922", label: "the day before" },
     { values: d.reference || [], color: "#8b98a5", label: "training reference" }],
    { fmt: (v) => (100 * v).toFixed(0) + "%" });
  const c = w.confidence_histogram, total = c.counts.reduce((a, b) => a + b, 0);
  bars($("confidence-chart"), c.counts.map((_, i) => (i % 4 === 0 ? (i * c.bin_width).toFixed(1) : "")),
    [{ values: c.counts.map((n) => (total ? n / total : 0)), color: "#58a6ff", label: "observed" },
     { values: c.reference || [], color: "#8b98a5", label: "training reference" }],
    { fmt: (v) => (100 * v).toFixed(0) + "%" });

  const rows = [
    ["requests", (x) => String(x.requests), (x) => x.requests],
    ["availability", (x) => pct(x.availability), (x) => x.availability],
    ["error budget left", (x) => pct(x.error_budget_remaining, 1), (x) => x.error_budget_remaining],
    ["burn rate", (x) => num(x.burn_rate, 2), (x) => x.burn_rate],
    ["p50", (x) => secs(x.latency_s.p50), (x) => x.latency_s.p50],
    ["p95", (x) => secs(x.latency_s.p95), (x) => x.latency_s.p95],
    ["p99", (x) => secs(x.latency_s.p99), (x) => x.latency_s.p99],
    ["throughput (req/s)", (x) => num(x.throughput_rps, 3), (x) => x.throughput_rps],
    ["predictions", (x) => String(x.predictions), (x) => x.predictions],
    ["envelopes (postal codes)", (x) => String(x.postcodes), (x) => x.postcodes],
    ["envelope review rate", (x) => pct(x.postcode_review_rate, 1), (x) => x.postcode_review_rate],
    ["digit review rate", (x) => pct(x.review_rate, 1), (x) => x.review_rate],
    ["drift PSI", (x) => num(x.drift.psi, 3), (x) => x.drift.psi],
  ];
  $("slo-table").tBodies[0].replaceChildren(...rows.map(([name, fmt, raw]) => {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${name}</td>`;
    for (const win of WINDOWS) {
      const td = document.createElement("td");
      td.id = `w-${win}-${name.split(" ")[0]}`;
      td.textContent = fmt(data.windows[win]);
      td.dataset.raw = JSON.stringify(raw(data.windows[win]));
      tr.appendChild(td);
    }
    return tr;
  }));
  latencyChart(data);
  timelineChart(data);
}

// Redis down: the live state (queues, workers, reviews) is unknown.
function renderLive(data) {
  const reason = data.sources.redis.reason;
  if (data.queues == null) {
    set("queue-depth", UNKNOWN, null); set("queue-sub", reason); tone("tile-queue", "unknown");
  } else {
    const queues = Object.entries(data.queues);
    const depth = queues.reduce((a, [, q]) => a + q.depth, 0), age = Math.max(0, ...queues.map(([, q]) => q.oldest_age_s));
    set("queue-depth", String(depth), depth);
    set("queue-sub", queues.map(([n, q]) => `${n.replace("digits.", "")} ${q.depth} (oldest ${secs(q.oldest_age_s)})`).join(" · "));
    tone("tile-queue", age > 2 ? "bad" : age > 0.5 ? "warn" : "ok");
  }
  const w = data.windows && data.windows[windowName];
  if (data.workers == null) {
    set("workers-count", UNKNOWN, null); set("batch-sub", reason); tone("tile-workers", "unknown");
  } else {
    set("workers-count", String(data.workers.length), data.workers.length);
    // An idle worker is live (fresh heartbeat), not broken: no batches is not a fault.
    set("batch-sub", w ? (w.batches ? `mean batch ${num(w.mean_batch_size, 1)} images over ${w.batches} batches` : "idle: no batches in the window") : "");
    tone("tile-workers", data.workers.length ? "ok" : "bad");
  }
  $("workers-table").tBodies[0].replaceChildren(...(data.workers || []).map((wk) => {
    const tr = document.createElement("tr");
    for (const v of [wk.name, secs(wk.last_seen_s) + " ago", "live"]) {
      const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
    }
    return tr;
  }));
  if (data.reviews == null) {
    set("review-backlog", UNKNOWN, null); set("backlog-sub", reason); tone("tile-backlog", "unknown");
  } else {
    const r = data.reviews;
    set("review-backlog", String(r.pending), r.pending);
    set("backlog-sub", r.pending ? `oldest waiting ${ago(r.oldest_age_s)}` : "nothing waiting for a person");
    tone("tile-backlog", r.oldest_age_s > 86400 ? "bad" : r.oldest_age_s > 3600 ? "warn" : "ok");
  }
}

function ago(s) { return s == null ? "–" : s < 120 ? s.toFixed(0) + " s" : s < 7200 ? (s / 60).toFixed(0) + " min" : (s / 3600).toFixed(1) + " h"; }

function render(data) {
  last = data;
  set("model", data.model ? `model ${data.model.name} v${data.model.version}` : "model unknown");
  const down = [data.sources.prometheus, data.sources.redis].filter((s) => !s.ok).map((s) => s.reason);
  set("updated", "updated " + new Date(data.generated_at * 1000).toLocaleTimeString() + (down.length ? " · " + down.join(" · ") : ""));
  document.querySelectorAll("#windows button").forEach((b) => b.classList.toggle("active", b.dataset.window === windowName));
  if (data.windows == null) renderUnknownWindows(data.sources.prometheus.reason);
  else renderWindows(data);
  renderLive(data);
  document.body.dataset.ready = "1";
}

async function refresh() {
  try {
    const response = await fetch("/v1/slo", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
  } catch (err) {
    set("updated", "update failed: " + err.message);
  }
}

document.querySelectorAll("#windows button").forEach((b) => b.addEventListener("click", () => {
  windowName = b.dataset.window;
  if (last) render(last);
}));
refresh();
setInterval(refresh, REFRESH_MS);
