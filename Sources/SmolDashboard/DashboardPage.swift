/// The dashboard's single page: plain HTML, CSS and JavaScript, no external resources. It reads
/// the JSON API, draws curves as SVG (raw faint behind the smoothed curve, the baseline's tolerance
/// band when a run has a baseline) and polls every 3 seconds. Long series arrive downsampled by the
/// server (bucket means with their min–max range drawn as a faint band); a step range (from / to)
/// zooms in, at full resolution once the range is short enough.
enum DashboardPage {
    static let html = #"""
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>smol dashboard</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.2em;color:#222}
h1{font-size:1.3em}h2{font-size:1.05em;margin-top:1.4em}
table{border-collapse:collapse;font-size:.9em}td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left}
.status-running{color:#1f77b4}.status-finished{color:#2ca02c}.status-crashed,.status-failed{color:#d62728}
#controls{margin:.6em 0}#controls label{margin-right:1em}
.event-alert,.event-spike,.event-rollback{color:#d62728}
pre{background:#f6f6f6;padding:.6em;white-space:pre-wrap;font-size:.85em}
</style></head>
<body>
<h1>smol dashboard</h1>
<div id="error" style="color:#d62728"></div>
<h2>Runs</h2>
<table id="runs"><thead><tr><th></th><th>id</th><th>name</th><th>status</th><th>tags</th><th>started</th><th>core-h</th><th>baseline</th><th>output</th></tr></thead><tbody></tbody></table>
<div id="controls">
<label>metric <select id="metric"></select></label>
<label>x <select id="xaxis"><option>tokens</option><option>steps</option></select></label>
<label>smoothing <input id="smooth" type="range" min="0" max="0.99" step="0.01" value="0.6"> <span id="smoothv">0.6</span></label>
<label>steps <input id="from" type="number" placeholder="from" style="width:7em"> – <input id="to" type="number" placeholder="to" style="width:7em"></label>
<button id="zoomreset">all steps</button> <span id="resolution"></span>
</div>
<div id="plotbox"></div>
<h2>Events and alerts</h2><table id="events"><thead><tr><th>run</th><th>step</th><th>kind</th><th>message</th></tr></thead><tbody></tbody></table>
<h2>Evaluations (latest per task and metric)</h2><table id="evals"><thead><tr><th>run</th><th>step</th><th>task</th><th>metric</th><th>value</th><th>stderr</th></tr></thead><tbody></tbody></table>
<h2>Ablation reports</h2><div id="ablations"></div>
<script>
"use strict";
const params = new URLSearchParams(location.search);
let selected = new Set((params.get("runs") || "").split(",").filter(s => s).map(Number));
let metric = params.get("metric") || "loss";
document.getElementById("xaxis").value = params.get("x") || "tokens";
if (params.get("smooth")) document.getElementById("smooth").value = params.get("smooth");
document.getElementById("from").value = params.get("from") || "";
document.getElementById("to").value = params.get("to") || "";
let runs = [], details = {}, series = {};
const colors = ["#1f77b4","#d62728","#2ca02c","#ff7f0e","#9467bd","#8c564b","#e377c2","#17becf"];
const esc = s => String(s).replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;","\"":"&quot;"}[c]));
async function get(url) { const r = await fetch(url); if (!r.ok) throw new Error(url + ": " + r.status + " " + (await r.text())); return r.json(); }
// Debiased exponential moving average; a bucket of n points counts as n steps of the average, so
// the curve keeps its shape whatever the server's downsampling.
function smoothed(y, w, counts) {
  let last = 0, norm = 0;
  return y.map((v, i) => { const wi = Math.pow(w, counts ? counts[i] : 1); last = last * wi + (1 - wi) * v; norm = norm * wi + (1 - wi); return w === 0 ? v : last / norm; });
}
function range() { const a = document.getElementById("from").value, b = document.getElementById("to").value; return (a !== "" ? "&from=" + Number(a) : "") + (b !== "" ? "&to=" + Number(b) : ""); }
function interp(xs, ys, x) { if (x < xs[0] || x > xs[xs.length - 1]) return null; let i = xs.findIndex(v => v >= x); if (xs[i] === x || i === 0) return ys[i]; const t = (x - xs[i - 1]) / (xs[i] - xs[i - 1]); return ys[i - 1] + t * (ys[i] - ys[i - 1]); }
function renderRuns() {
  const tb = document.querySelector("#runs tbody");
  tb.innerHTML = runs.map(r => `<tr><td><input type="checkbox" data-id="${r.id}" ${selected.has(r.id) ? "checked" : ""}></td><td>${r.id}</td><td>${esc(r.name)}</td>` +
    `<td class="status-${r.status}">${r.status}</td><td>${esc(r.tags.join(", "))}</td><td>${new Date(r.started_at * 1000).toISOString().slice(0, 19)}</td>` +
    `<td>${r.core_hours.toFixed(4)}</td><td>${esc(r.baseline || "")}</td><td>${esc(r.output_dir)}</td></tr>`).join("");
  tb.querySelectorAll("input").forEach(cb => cb.onchange = () => { const id = Number(cb.dataset.id); cb.checked ? selected.add(id) : selected.delete(id); refresh(); });
}
function baselineOf(run) {
  if (!run.baseline) return null;
  const b = runs.find(r => String(r.id) === run.baseline || r.name === run.baseline || r.output_dir === run.baseline);
  let tol = 0.02, m = "val_loss";
  try { const c = JSON.parse(run.config); if (c.baseline) { tol = c.baseline.tolerance ?? tol; m = c.baseline.metric ?? m; } } catch (e) {}
  return b ? {run: b, tolerance: tol, metric: m} : null;
}
function renderPlot() {
  const box = document.getElementById("plotbox"), xaxis = document.getElementById("xaxis").value, w = Number(document.getElementById("smooth").value);
  document.getElementById("smoothv").textContent = w.toFixed(2);
  const lines = [];
  for (const id of selected) { const s = series[id + "|" + metric]; if (s && s.points.length) lines.push({id, pts: s.points, view: s}); }
  const bands = [];
  for (const id of selected) {
    const run = runs.find(r => r.id === id), b = run && baselineOf(run);
    if (b && b.metric === metric) { const s = series[b.run.id + "|" + metric]; if (s && s.points.length) bands.push({id, base: b.run.id, tol: b.tolerance, pts: s.points}); }
  }
  document.getElementById("resolution").textContent = lines.map(l => `run ${l.id}: ${l.view.downsampled ? l.pts.length + " buckets of " + l.view.total + " points" : l.view.total + " points"}`).join("; ");
  if (!lines.length) { box.innerHTML = "<p>Select runs that have the metric" + (range() ? " in this step range" : "") + ".</p>"; return; }
  const X = p => xaxis === "steps" ? p.step : p.tokens;
  const all = lines.flatMap(l => l.pts.flatMap(p => p.min == null ? [p] : [p, {...p, value: p.min}, {...p, value: p.max}])).concat(bands.flatMap(b => b.pts.flatMap(p => [{...p, value: p.value * (1 + b.tol)}, {...p, value: p.value * (1 - b.tol)}])));
  const xs = all.map(X), ys = all.map(p => p.value).filter(v => v != null && Number.isFinite(v));
  let xMin = Math.min(...xs), xMax = Math.max(...xs), yMin = Math.min(...ys), yMax = Math.max(...ys);
  if (xMax <= xMin) xMax = xMin + 1; if (yMax - yMin < 1e-12) { yMin -= .5; yMax += .5; }
  const pad = (yMax - yMin) * .05; yMin -= pad; yMax += pad;
  const W = 820, H = 420, L = 70, R = 20, T = 20, B = 45, pw = W - L - R, ph = H - T - B;
  const px = x => L + (x - xMin) / (xMax - xMin) * pw, py = y => T + (yMax - y) / (yMax - yMin) * ph, f = v => v.toFixed(2);
  let s = `<svg id="plot" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" data-metric="${esc(metric)}" data-x="${xaxis}" data-x-min="${xMin}" data-x-max="${xMax}" data-y-min="${yMin}" data-y-max="${yMax}" data-left="${L}" data-top="${T}" data-width="${pw}" data-height="${ph}">`;
  s += `<rect x="${L}" y="${T}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`;
  for (let i = 0; i <= 4; i++) {
    const xv = xMin + (xMax - xMin) * i / 4, yv = yMin + (yMax - yMin) * i / 4;
    s += `<text x="${f(px(xv))}" y="${H - 25}" text-anchor="middle" font-size="11">${Number(xv.toPrecision(4))}</text>`;
    s += `<line x1="${L}" x2="${L + pw}" y1="${f(py(yv))}" y2="${f(py(yv))}" stroke="#eee"/><text x="${L - 6}" y="${f(py(yv) + 4)}" text-anchor="end" font-size="11">${Number(yv.toPrecision(4))}</text>`;
  }
  s += `<text x="${L + pw / 2}" y="${H - 6}" text-anchor="middle" font-size="12">${xaxis}</text>`;
  for (const b of bands) {
    const top = b.pts.map(p => `${f(px(X(p)))},${f(py(p.value * (1 + b.tol)))}`), bot = b.pts.slice().reverse().map(p => `${f(px(X(p)))},${f(py(p.value * (1 - b.tol)))}`);
    s += `<polygon class="baseline-band" data-run="${b.id}" data-baseline="${b.base}" fill="#999" fill-opacity="0.2" stroke="none" points="${top.concat(bot).join(" ")}"/>`;
  }
  lines.forEach((l, i) => {
    const c = colors[i % colors.length], pts = l.pts.filter(p => p.value != null && Number.isFinite(p.value)), ys = pts.map(p => p.value);
    const sm = smoothed(ys, w, l.view.downsampled ? pts.map(p => p.n) : null);
    if (l.view.downsampled) {
      const top = pts.map(p => `${f(px(X(p)))},${f(py(p.max))}`), bot = pts.slice().reverse().map(p => `${f(px(X(p)))},${f(py(p.min))}`);
      s += `<polygon class="range" data-run="${l.id}" fill="${c}" fill-opacity="0.12" stroke="none" points="${top.concat(bot).join(" ")}"/>`;
    }
    s += `<polyline class="raw" data-run="${l.id}" data-n="${pts.length}" data-total="${l.view.total}" data-downsampled="${l.view.downsampled}" fill="none" stroke="${c}" stroke-opacity="0.25" points="${pts.map(p => f(px(X(p))) + "," + f(py(p.value))).join(" ")}"/>`;
    s += `<polyline class="smoothed" data-run="${l.id}" fill="none" stroke="${c}" stroke-width="2" points="${pts.map((p, j) => f(px(X(p))) + "," + f(py(sm[j]))).join(" ")}"/>`;
    const run = runs.find(r => r.id === l.id);
    s += `<text x="${L + pw - 8}" y="${T + 16 + 16 * i}" text-anchor="end" fill="${c}" font-size="12">${l.id}: ${esc(run ? run.name : "")}</text>`;
  });
  box.innerHTML = s + "</svg>";
}
function renderDetails() {
  const names = new Set();
  for (const id of selected) (details[id]?.metrics || []).forEach(m => names.add(m));
  if (!names.size) names.add(metric);
  const sel = document.getElementById("metric");
  sel.innerHTML = [...names].sort().map(m => `<option ${m === metric ? "selected" : ""}>${esc(m)}</option>`).join("");
  const ev = [], evals = [];
  for (const id of selected) {
    const d = details[id]; if (!d) continue;
    d.events.forEach(e => ev.push(`<tr class="event-${e.kind}"><td>${id}</td><td>${e.step}</td><td>${e.kind}</td><td>${esc(e.message)}</td></tr>`));
    const latest = {};
    d.evals.forEach(e => { latest[e.task + "/" + e.metric] = e; });
    Object.values(latest).forEach(e => evals.push(`<tr><td>${id}</td><td>${e.step}</td><td>${esc(e.task)}</td><td>${esc(e.metric)}</td><td>${e.value.toFixed(4)}</td><td>${e.stderr == null ? "" : e.stderr.toFixed(4)}</td></tr>`));
  }
  document.querySelector("#events tbody").innerHTML = ev.join("");
  document.querySelector("#evals tbody").innerHTML = evals.join("");
}
async function refresh() {
  try {
    runs = await get("/api/runs");
    if (!selected.size && runs.length) selected.add(runs[runs.length - 1].id);
    renderRuns();
    const need = new Set();
    for (const id of selected) {
      details[id] = await get("/api/runs/" + id);
      need.add(id);
      const b = baselineOf(details[id].run); if (b) need.add(b.run.id);
    }
    for (const id of need) {
      const names = details[id] ? details[id].metrics : (await get("/api/runs/" + id)).metrics;
      if (names.includes(metric)) series[id + "|" + metric] = await get("/api/runs/" + id + "/series?metric=" + encodeURIComponent(metric) + "&points=2000" + range());
    }
    renderDetails(); renderPlot();
    document.getElementById("error").textContent = "";
  } catch (e) { document.getElementById("error").textContent = String(e); }
}
async function loadAblations() {
  const reports = await get("/api/ablations");
  document.getElementById("ablations").innerHTML = reports.length ? reports.map(r => `<h3>${esc(r.name)}</h3>` +
    (r.plots ? r.plots.split("\n").map(p => `<img class="ablation-plot" alt="${esc(p)}" src="/api/ablations/${encodeURIComponent(r.name)}/${encodeURIComponent(p)}">`).join("") : "") +
    `<pre>${esc(r.markdown)}</pre>`).join("") : "<p>No ablation reports.</p>";
}
document.getElementById("metric").onchange = e => { metric = e.target.value; refresh(); };
document.getElementById("xaxis").onchange = renderPlot;
document.getElementById("smooth").oninput = renderPlot;
document.getElementById("from").onchange = refresh;
document.getElementById("to").onchange = refresh;
document.getElementById("zoomreset").onclick = () => { document.getElementById("from").value = ""; document.getElementById("to").value = ""; refresh(); };
refresh(); loadAblations();
setInterval(refresh, 3000);
</script>
</body></html>
"""#
}
