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

function latencyChart(data) {
  const el = $("latency-chart"), W = 600, L = 60, objective = data.objectives.latency_s;
  const max = Math.max(objective * 1.25, ...["5m", "1h", "24h"].map((w) => data.windows[w].latency_s.p99 || 0));
  const x = (v) => L + (W - L - 20) * v / max;
  const out = [];
  const colors = { p50: "#3fb950", p95: "#d29922", p99: "#f85149" };
  ["5m", "1h", "24h"].forEach((w, i) => {
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
  const labels = t.map((m) => m.minute);
  bars($("timeline-chart"), labels.map((m, i) => (i % 10 === 0 ? "-" + (t.length - i) + "m" : "")),
    [{ values: t.map((m) => m.requests), color: "#58a6ff", label: "requests" },
     { values: t.map((m) => m.errors_5xx), color: "#f85149", label: "5xx" }],
    { fmt: (v) => v.toFixed(0) });
}

function render(data) {
  last = data;
  const w = data.windows[windowName], obj = data.objectives;
  set("model", data.model ? `model ${data.model.name} v${data.model.version}` : "no model reference");
  set("updated", "updated " + new Date(data.generated_at * 1000).toLocaleTimeString());
  document.querySelectorAll("#windows button").forEach((b) => b.classList.toggle("active", b.dataset.window === windowName));

  set("availability", pct(w.availability), w.availability);
  set("availability-sub", `objective ${pct(obj.availability, 2)} · ${w.requests} requests, ${w.errors_5xx} 5xx`);
  const budget = w.error_budget_remaining;
  set("budget", "error budget left " + pct(budget, 1), budget);
  $("budget-bar").style.width = Math.max(0, Math.min(1, budget)) * 100 + "%";
  $("budget-bar").style.background = budget > 0.5 ? "var(--ok)" : budget > 0 ? "var(--warn)" : "var(--bad)";
  tone("tile-availability", w.availability == null ? "" : w.availability >= obj.availability ? "ok" : budget > 0 ? "warn" : "bad");

  set("p99", secs(w.latency_s.p99), w.latency_s.p99);
  set("latency-sub", `p50 ${secs(w.latency_s.p50)} · p95 ${secs(w.latency_s.p95)} · ${pct(w.latency_within_objective, 2)} within ${obj.latency_s} s`);
  tone("tile-latency", w.latency_s.p99 == null ? "" : w.latency_s.p99 <= obj.latency_s ? "ok" : "bad");

  set("throughput", num(w.throughput_rps, 2) + " req/s", w.throughput_rps);
  set("throughput-sub", `${w.predictions} predictions · ${w.sync_fallbacks} sync→202 · ${Object.values(w.rejections).reduce((a, b) => a + b, 0)} rejected`);

  const queues = Object.entries(data.queues);
  const depth = queues.reduce((a, [, q]) => a + q.depth, 0), age = Math.max(0, ...queues.map(([, q]) => q.oldest_age_s));
  set("queue-depth", String(depth), depth);
  set("queue-sub", queues.map(([n, q]) => `${n.replace("digits.", "")} ${q.depth} (oldest ${secs(q.oldest_age_s)})`).join(" · "));
  tone("tile-queue", age > 2 ? "bad" : age > 0.5 ? "warn" : "ok");

  set("workers-count", String(data.workers.length), data.workers.length);
  set("batch-sub", `mean batch ${num(w.mean_batch_size, 1)} images over ${w.batches} batches`);
  tone("tile-workers", data.workers.length ? "ok" : "bad");

  set("review-rate", pct(w.review_rate, 1), w.review_rate);
  set("review-sub", `${w.needs_review} of ${w.predictions} predictions need review`);

  const d = w.drift;
  if (d) {
    const label = { drifting: "DRIFTING", stable: "stable", insufficient_data: "too few samples" }[d.state];
    set("drift-state", label, d.state);
    set("drift-sub", `PSI ${num(d.psi, 3)} (threshold ${d.threshold}) · χ² ${num(d.chi_square, 1)} · n=${d.samples}`);
    $("drift-sub").dataset.psi = JSON.stringify(d.psi);
    tone("tile-drift", d.state === "drifting" ? "bad" : d.state === "stable" ? "ok" : "");
    bars($("class-chart"), ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
      [{ values: d.observed || [], color: "#58a6ff", label: "observed" },
       { values: d.reference, color: "#8b98a5", label: "training reference" }],
      { fmt: (v) => (100 * v).toFixed(0) + "%" });
  } else {
    set("drift-state", "no reference", null);
  }
  const c = w.confidence_histogram, total = c.counts.reduce((a, b) => a + b, 0);
  bars($("confidence-chart"), c.counts.map((_, i) => (i % 4 === 0 ? (i * c.bin_width).toFixed(1) : "")),
    [{ values: c.counts.map((n) => (total ? n / total : 0)), color: "#58a6ff", label: "observed" },
     { values: c.reference || [], color: "#8b98a5", label: "training reference" }],
    { fmt: (v) => (100 * v).toFixed(0) + "%" });

  const rows = [
    ["requests", (x) => String(x.requests), (x) => x.requests],
    ["availability", (x) => pct(x.availability), (x) => x.availability],
    ["error budget left", (x) => pct(x.error_budget_remaining, 1), (x) => x.error_budget_remaining],
    ["p50", (x) => secs(x.latency_s.p50), (x) => x.latency_s.p50],
    ["p95", (x) => secs(x.latency_s.p95), (x) => x.latency_s.p95],
    ["p99", (x) => secs(x.latency_s.p99), (x) => x.latency_s.p99],
    ["throughput (req/s)", (x) => num(x.throughput_rps, 3), (x) => x.throughput_rps],
    ["predictions", (x) => String(x.predictions), (x) => x.predictions],
    ["review rate", (x) => pct(x.review_rate, 1), (x) => x.review_rate],
    ["drift PSI", (x) => (x.drift ? num(x.drift.psi, 3) : "–"), (x) => (x.drift ? x.drift.psi : null)],
  ];
  $("slo-table").tBodies[0].replaceChildren(...rows.map(([name, fmt, raw]) => {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${name}</td>`;
    for (const win of ["5m", "1h", "24h"]) {
      const td = document.createElement("td");
      td.id = `w-${win}-${name.split(" ")[0]}`;
      td.textContent = fmt(data.windows[win]);
      td.dataset.raw = JSON.stringify(raw(data.windows[win]));
      tr.appendChild(td);
    }
    return tr;
  }));
  $("workers-table").tBodies[0].replaceChildren(...data.workers.map((wk) => {
    const tr = document.createElement("tr");
    for (const v of [wk.name, secs(wk.last_seen_s) + " ago", wk.batches, num(wk.mean_batch_size, 1), wk.last_batch_size ?? "–"]) {
      const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
    }
    return tr;
  }));
  latencyChart(data);
  timelineChart(data);
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
