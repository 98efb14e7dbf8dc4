// urltester's page, URLs over time: the counts of URLs by state, the by-URL view, the
// changes view and a URL's detail with its latency and outcomes drawn as SVG by this script.
// Uses app.js's helpers ($, api, message, cell, when, number). User data goes in with
// textContent only; SVG is built with createElementNS (no markup strings anywhere).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
let urlsCursor = null;
let shownView = "jobs-view";

const ms = (v) => (v === null || v === undefined ? "" : `${Math.round(v)} ms`);
const pct = (v) => (v === null || v === undefined ? "" : `${(v * 100).toFixed(1)}%`);

// ---------------------------------------------------------------- summary and tabs

async function loadSummary() {
  const answer = await api("/api/v1/urls/summary");
  if (!answer.ok) return;
  const s = await answer.json();
  $("url-totals").textContent = `${number(s.total)} URLs: ${number(s.ok)} ok, ${number(s.slow)} slow, ` +
    `${number(s.failing)} failing, ${number(s.pending)} pending`;
  $("url-totals").dataset.lastBatch = s.last_batch ? String(s.last_batch.id) : "";
  $("url-totals").dataset.lastBatchName = s.last_batch ? s.last_batch.name : "";
}

let summaryTimer = null;
function summarySoon() {
  if (summaryTimer) return;
  summaryTimer = setTimeout(() => { summaryTimer = null; loadSummary().catch(() => {}); }, 1000);
}

function showView(id) {
  shownView = id;
  for (const tab of $("tabs").querySelectorAll("button")) tab.setAttribute("aria-selected", String(tab.dataset.view === id));
  for (const view of document.querySelectorAll("section.view")) view.hidden = view.id !== id;
  if (id === "urls-view") loadUrls(null);
  if (id === "changes-view") loadChanges();
}

$("tabs").addEventListener("click", (event) => {
  const tab = event.target.closest("button[data-view]");
  if (tab) showView(tab.dataset.view);
});

// ---------------------------------------------------------------- by URL

function urlParams() {
  const params = new URLSearchParams({ sort: $("url-sort").value, window: $("url-window").value, limit: "100" });
  if ($("url-state").value) params.set("state", $("url-state").value);
  const text = $("url-search").value.trim();
  if (text) params.set("contains", text);
  return params;
}

function fillUrl(tr, u) {
  tr.replaceChildren();
  const last = u.last || {};
  cell(tr, u.state, `state-${u.state === "failing" ? "failed" : u.state === "pending" ? "pending" : "ok"}`);
  cell(tr, when(u.since));
  cell(tr, last.outcome);
  cell(tr, last.status_code);
  cell(tr, ms(last.total_ms));
  cell(tr, pct(u.uptime));
  cell(tr, ms(u.latency_ms.p50));
  cell(tr, ms(u.latency_ms.p95));
  cell(tr, u.url);
  cell(tr, last.title);
  tr.dataset.url = u.url;
  tr.dataset.state = u.state;
}

async function loadUrls(cursor) {
  const params = urlParams();
  if (cursor) params.set("cursor", cursor);
  const answer = await api(`/api/v1/urls?${params}`);
  const body = await answer.json();
  const tbody = $("url-list").tBodies[0];
  if (!cursor) tbody.replaceChildren();
  if (!answer.ok) { $("url-totals").textContent = message(body); return; }
  for (const u of body.urls) {
    const tr = document.createElement("tr");
    fillUrl(tr, u);
    tr.addEventListener("click", () => openUrl(u.id, u.url));
    tbody.appendChild(tr);
  }
  urlsCursor = body.next;
  $("urls-more").hidden = !urlsCursor;
}

$("urls-more").addEventListener("click", () => loadUrls(urlsCursor));
for (const id of ["url-state", "url-sort", "url-window"]) $(id).addEventListener("change", () => loadUrls(null));
let urlSearchTimer = null;
$("url-search").addEventListener("input", () => { clearTimeout(urlSearchTimer); urlSearchTimer = setTimeout(() => loadUrls(null), 300); });

// ---------------------------------------------------------------- changes

function side(check) {
  if (!check) return "–";
  return [check.outcome, check.status_code, ms(check.total_ms)].filter((x) => x !== null && x !== undefined && x !== "").join(" ");
}

async function loadChanges() {
  const since = $("changes-since").value;
  const params = new URLSearchParams({ limit: "1000" });
  if (since) {
    params.set("since", since);
  } else {
    await loadSummary();
    const batch = $("url-totals").dataset.lastBatch;
    if (!batch) { $("changes-about").textContent = "no batch yet"; $("change-list").tBodies[0].replaceChildren(); return; }
    params.set("batch", batch);
  }
  const answer = await api(`/api/v1/changes?${params}`);
  const body = await answer.json();
  const tbody = $("change-list").tBodies[0];
  tbody.replaceChildren();
  if (!answer.ok) { $("changes-about").textContent = message(body); return; }
  $("changes-about").textContent = body.batch ? `batch ${body.batch.id} "${body.batch.name}" against each URL's check before it`
    : "each URL checked since then against its check before";
  const counts = Object.entries(body.counts).filter(([, n]) => n).map(([k, n]) => `${number(n)} ${k}`);
  $("changes-counts").textContent = counts.join(", ") || "no changes";
  for (const d of body.changes) {
    const tr = document.createElement("tr");
    cell(tr, d.change, d.change === "new_failure" || d.change === "still_failing" ? "state-failed"
      : d.change === "recovered" ? "state-ok" : "");
    cell(tr, side(d.before));
    cell(tr, side(d.after));
    cell(tr, d.url);
    tr.dataset.change = d.change;
    tr.addEventListener("click", () => openUrl(d.url_id, d.url));
    tbody.appendChild(tr);
  }
}

$("changes-since").addEventListener("change", loadChanges);

// ---------------------------------------------------------------- live: event: change

let refreshTimer = null;
document.addEventListener("urltester:change", (event) => {
  const c = event.detail;
  summarySoon();
  const li = document.createElement("li");
  li.textContent = `${when(c.at)}  ${c.change}  ${c.from || "–"} → ${c.to}  ${c.url}` +
    (c.status_code ? `  ${c.status_code}` : "") + (c.error ? `  ${c.error}` : "");
  li.dataset.change = c.change;
  const list = $("live-changes");
  list.insertBefore(li, list.firstChild);
  while (list.children.length > 200) list.lastChild.remove();
  for (const tr of $("url-list").tBodies[0].rows) {
    if (tr.dataset.url === c.url) { tr.cells[0].textContent = c.to; tr.dataset.state = c.to; tr.cells[1].textContent = when(c.at); }
  }
  // The open view catches up (at most every 2 s: changes arrive by the hundred in a batch).
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    if (shownView === "urls-view") loadUrls(null).catch(() => {});
    if (shownView === "changes-view") loadChanges().catch(() => {});
  }, 2000);
});

// ---------------------------------------------------------------- a URL's detail and its chart

function svg(name, attrs, parent) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (parent) parent.appendChild(el);
  return el;
}

// Latency as a line over time and each check's outcome as a mark under it, oldest left.
function chart(points) {
  const W = 520, H = 200, L = 48, R = 8, T = 10, B = 40;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", id: "latency-chart" });
  const title = svg("title", {}, root);
  title.textContent = "latency and outcomes of the recent checks";
  // One mark per job: its own check comes first, before the regions of a job that named them.
  const seen = new Set();
  const checks = points.filter((p) => !seen.has(p.job_id) && seen.add(p.job_id)).reverse();
  if (!checks.length) { svg("text", { x: L, y: H / 2, class: "axis" }, root).textContent = "no checks stored"; return root; }
  const times = checks.map((p) => new Date(p.checked_at).getTime());
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const top = Math.max(1, ...checks.map((p) => p.total_ms || 0));
  const x = (t) => L + (t1 === t0 ? (W - L - R) / 2 : ((t - t0) / (t1 - t0)) * (W - L - R));
  const y = (v) => T + (1 - v / top) * (H - T - B);
  svg("line", { x1: L, y1: y(0), x2: W - R, y2: y(0), class: "axis" }, root);
  svg("line", { x1: L, y1: T, x2: L, y2: y(0), class: "axis" }, root);
  for (const v of [0, top / 2, top]) {
    svg("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end", class: "axis" }, root).textContent = `${Math.round(v)}`;
  }
  svg("text", { x: 2, y: T + 10, class: "axis" }, root).textContent = "ms";
  const line = checks.filter((p) => p.total_ms !== null).map((p, i) => `${i ? "L" : "M"}${x(new Date(p.checked_at).getTime()).toFixed(1)},${y(p.total_ms).toFixed(1)}`);
  if (line.length) svg("path", { d: line.join(" "), class: "latency" }, root);
  checks.forEach((p, i) => {
    const cx = x(times[i]);
    const ok = p.outcome === "ok";
    if (p.total_ms !== null) svg("circle", { cx, cy: y(p.total_ms), r: 2.5, class: ok ? "dot-ok" : "dot-bad" }, root);
    const mark = svg("rect", { x: cx - 3, y: H - B + 8, width: 6, height: 12, class: ok ? "mark-ok" : "mark-bad",
      "data-outcome": p.outcome }, root);
    svg("title", {}, mark).textContent = `${when(p.checked_at)} ${p.outcome} ${p.status_code ?? ""} ${ms(p.total_ms)}`;
  });
  svg("text", { x: L, y: H - 4, class: "axis" }, root).textContent = when(checks[0].checked_at);
  svg("text", { x: W - R, y: H - 4, "text-anchor": "end", class: "axis" }, root).textContent = when(checks[checks.length - 1].checked_at);
  return root;
}

// By the URL's id: the page knows a URL holding a password only masked, which names no URL.
async function openUrl(id, url) {
  const params = new URLSearchParams({ id: String(id), limit: "200" });
  const answer = await api(`/api/v1/urls/history?${params}`);
  const h = await answer.json();
  $("url-title").textContent = url;
  const figures = $("url-figures");
  figures.replaceChildren();
  $("chart").replaceChildren();
  $("url-changes").replaceChildren();
  if (!answer.ok) {
    $("url-state-line").textContent = message(h);
  } else {
    $("url-state-line").textContent = `${h.state} since ${when(h.since) || "–"}`;
    $("url-state-line").className = `state-${h.state === "failing" ? "failed" : "ok"}`;
    for (const [k, v] of [["uptime", pct(h.uptime)], ["checks", `${h.checks} (${h.ok} ok)`],
      ["p50", ms(h.latency_ms.p50)], ["p95", ms(h.latency_ms.p95)], ["p99", ms(h.latency_ms.p99)],
      ["last checked", when(h.last_checked_at)], ["last error", h.last && h.last.error]]) {
      if (v === null || v === undefined || v === "") continue;
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = String(v);
      dd.dataset.key = k;
      figures.append(dt, dd);
    }
    $("chart").appendChild(chart(h.recent));
    for (const c of h.changes) {
      const li = document.createElement("li");
      li.textContent = `${when(c.at)}  ${c.from || "–"} → ${c.to}  ${c.outcome} ${c.status_code ?? ""}` + (c.error ? `  ${c.error}` : "");
      $("url-changes").appendChild(li);
    }
  }
  $("detail").hidden = true; // one drawer at a time
  $("url-detail").hidden = false;
  document.body.classList.add("detail-open");
}

$("url-close").addEventListener("click", () => {
  $("url-detail").hidden = true;
  document.body.classList.remove("detail-open");
});

// ---------------------------------------------------------------- start (app.js's start() ran before this file)

function startUrls() { loadSummary().catch(() => {}); if (shownView !== "jobs-view") showView(shownView); }
document.addEventListener("urltester:start", startUrls);
// Change events carry no id: after a reconnect the open view reads again what it may have missed.
document.addEventListener("urltester:connected", () => { if (shownView !== "jobs-view") startUrls(); else summarySoon(); });
if (token()) startUrls();
