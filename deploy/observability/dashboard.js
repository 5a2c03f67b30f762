// Draws every panel of a Grafana dashboard JSON (grafana-dashboard.json) by running its
// PromQL against Prometheus's HTTP API (/api/v1/query_range). No dependencies.
// Each panel element carries data-group (its row), data-title, data-state
// (ok | empty | error), data-series and data-points, so a test can read the DOM;
// <body data-state="done"> once every panel has answered.
"use strict";

const COLORS = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9",
                "#ff9830", "#1f60c4", "#fade2a"];

function params() {
  const q = new URLSearchParams(window.location.search);
  return {
    prometheus: (q.get("prometheus") || "").replace(/\/$/, ""),
    dashboard: q.get("dashboard") || "grafana-dashboard.json",
    minutes: Number(q.get("minutes") || "15"),
  };
}

function legend(format, metric) {
  if (!format) return JSON.stringify(metric);
  return format.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, k) => metric[k] === undefined ? "" : metric[k]);
}

function formatValue(v, unit) {
  if (!isFinite(v)) return String(v);
  if (unit === "bytes") {
    const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
    while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return v.toFixed(i ? 1 : 0) + " " + u[i];
  }
  const s = Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(2);
  return s + (unit === "s" ? " s" : unit === "ops" ? "/s" : "");
}

async function queryRange(base, expr, start, end, step) {
  const url = `${base}/api/v1/query_range?query=${encodeURIComponent(expr)}` +
    `&start=${start}&end=${end}&step=${step}`;
  const res = await fetch(url);
  const body = await res.json();
  if (body.status !== "success") throw new Error(body.error || `HTTP ${res.status}`);
  return body.data.result;
}

function draw(svg, series) {
  const ns = "http://www.w3.org/2000/svg";
  const w = 400, h = 140, pad = 4;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "none");
  let t0 = Infinity, t1 = -Infinity, vmax = 0;
  for (const s of series) for (const [t, v] of s.points) {
    if (!isFinite(v)) continue;
    t0 = Math.min(t0, t); t1 = Math.max(t1, t); vmax = Math.max(vmax, v);
  }
  if (!isFinite(t0)) return;
  if (t1 === t0) t1 = t0 + 1;
  if (vmax === 0) vmax = 1;
  series.forEach((s, i) => {
    const pts = s.points.filter(([, v]) => isFinite(v)).map(([t, v]) =>
      `${(pad + (t - t0) / (t1 - t0) * (w - 2 * pad)).toFixed(1)},` +
      `${(h - pad - v / vmax * (h - 2 * pad)).toFixed(1)}`);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.length === 1 ? `${pts[0]} ${pts[0]}` : pts.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", COLORS[i % COLORS.length]);
    line.setAttribute("stroke-width", "1.5");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.appendChild(line);
  });
}

async function renderPanel(el, panel, p, start, end, step) {
  const unit = ((panel.fieldConfig || {}).defaults || {}).unit || "";
  const series = [];
  const errors = [];
  for (const target of panel.targets || []) {
    try {
      for (const r of await queryRange(p.prometheus, target.expr, start, end, step)) {
        series.push({
          name: legend(target.legendFormat, r.metric),
          points: r.values.map(([t, v]) => [Number(t), Number(v)]),
        });
      }
    } catch (e) {
      errors.push(`${target.refId}: ${e.message}`);
    }
  }
  const points = series.reduce((n, s) => n + s.points.length, 0);
  el.dataset.series = String(series.length);
  el.dataset.points = String(points);
  el.dataset.state = errors.length ? "error" : series.length ? "ok" : "empty";
  draw(el.querySelector("svg"), series);
  const lg = el.querySelector(".legend");
  series.forEach((s, i) => {
    const last = s.points.length ? s.points[s.points.length - 1][1] : NaN;
    const item = document.createElement("div");
    item.className = "series";
    item.dataset.last = String(last);
    item.innerHTML = `<span style="color:${COLORS[i % COLORS.length]}">&#9632;</span> `;
    item.appendChild(document.createTextNode(`${s.name}: ${formatValue(last, unit)}`));
    lg.appendChild(item);
  });
  const note = el.querySelector(".note");
  note.textContent = errors.length ? errors.join("; ") : series.length ? "" : "no data";
}

async function main() {
  const p = params();
  const dash = await (await fetch(p.dashboard)).json();
  document.getElementById("title").textContent = dash.title;
  const end = Math.floor(Date.now() / 1000);
  const start = end - p.minutes * 60;
  const step = Math.max(1, Math.floor((end - start) / 240));
  document.getElementById("meta").textContent =
    `Prometheus ${p.prometheus || "(this origin)"}, last ${p.minutes} min, step ${step}s`;
  const rows = document.getElementById("rows");
  let group = "", grid = null;
  const jobs = [];
  for (const panel of dash.panels || []) {
    if (panel.type === "row") {
      group = panel.title;
      const h = document.createElement("h2");
      h.textContent = group;
      rows.appendChild(h);
      grid = null;
      continue;
    }
    if (!grid) {
      grid = document.createElement("div");
      grid.className = "grid";
      rows.appendChild(grid);
    }
    const el = document.createElement("section");
    el.className = "panel";
    el.dataset.group = group;
    el.dataset.title = panel.title;
    el.dataset.state = "loading";
    el.innerHTML = "<h3></h3><svg></svg><div class=\"legend\"></div><div class=\"note\"></div>";
    el.querySelector("h3").textContent = panel.title;
    el.title = panel.description || "";
    grid.appendChild(el);
    jobs.push(renderPanel(el, panel, p, start, end, step));
  }
  await Promise.all(jobs);
}

main().catch((e) => {
  document.getElementById("meta").textContent = `failed: ${e.message}`;
  document.body.dataset.error = e.message;
}).finally(() => { document.body.dataset.state = "done"; });
