// urltester's page: add URLs, watch their results arrive, open one.
// Every piece of user data (URLs, titles, errors, server text) goes into the page with
// textContent, never innerHTML; the Content-Security-Policy forbids inline script as well.
"use strict";

const TOKEN_KEY = "urltester.token";
const $ = (id) => document.getElementById(id);
const rows = new Map(); // job id -> <tr>
let nextCursor = null;
let stream = null; // AbortController of the event stream
let lastEventId = null;

function token() { return sessionStorage.getItem(TOKEN_KEY); }

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${token()}`, ...(options.headers || {}) };
  const answer = await fetch(path, { ...options, headers });
  if (answer.status === 401) { askToken("That token was not accepted."); throw new Error("unauthorized"); }
  return answer;
}

function message(body) {
  if (!body || body.detail === undefined) return "unexpected answer";
  if (typeof body.detail === "string") return body.detail;
  return body.detail.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
}

// ---------------------------------------------------------------- token

function askToken(why) {
  if (stream) stream.abort();
  sessionStorage.removeItem(TOKEN_KEY);
  $("main").hidden = true;
  $("forget").hidden = true; // nothing to forget until a token is given
  $("login").hidden = false;
  $("login-error").textContent = why || "";
  $("token").focus();
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  start();
});
$("forget").addEventListener("click", () => askToken(""));

// ---------------------------------------------------------------- table

function stateOf(job) {
  if (job.state !== "done") return { text: job.state, cls: "state-pending" };
  if (job.ok) return { text: "ok", cls: "state-ok" };
  return { text: job.outcome || "failed", cls: "state-failed" };
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
}

function when(iso) {
  // ISO 8601 UTC from the API, shown in the browser's zone: "2026-12-05 15:04:05".
  if (!iso) return "";
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return String(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
}

function fill(tr, job) {
  tr.replaceChildren();
  const state = stateOf(job);
  cell(tr, job.id);
  cell(tr, state.text, state.cls);
  cell(tr, job.status_code);
  cell(tr, job.total_ms === null || job.total_ms === undefined ? "" : `${Math.round(job.total_ms)} ms`);
  cell(tr, job.url);
  cell(tr, job.title);
  cell(tr, job.error, "error");
  cell(tr, when(job.checked_at));
  cell(tr, job.batch);
  tr.dataset.state = state.text;
}

function matches(job) {
  const filter = new URLSearchParams($("filter").value);
  const text = $("search").value.trim().toLowerCase();
  if (filter.get("state") && job.state !== filter.get("state")) return false;
  if (filter.get("outcome") && job.outcome !== filter.get("outcome")) return false;
  if (filter.get("failed") && !(job.state === "done" && job.ok === false)) return false;
  if (text && !String(job.url).toLowerCase().includes(text)) return false;
  return true;
}

function show(job, { append = false } = {}) {
  let tr = rows.get(job.id);
  if (!tr) {
    if (!matches(job)) return;
    tr = document.createElement("tr");
    tr.dataset.id = String(job.id);
    tr.addEventListener("click", () => openDetail(job.id));
    rows.set(job.id, tr);
    const body = $("jobs").tBodies[0];
    if (append) {
      body.appendChild(tr);
    } else {
      // newest first: before the first row with a smaller id
      const after = [...body.rows].find((r) => Number(r.dataset.id) < job.id);
      body.insertBefore(tr, after || null);
    }
  }
  // A page read before an event may be older than it: never take a row back from done.
  if (tr.dataset.done === "1" && job.state !== "done") return;
  fill(tr, job);
  tr.dataset.done = job.state === "done" ? "1" : "0";
}

function query() {
  const params = new URLSearchParams($("filter").value);
  const text = $("search").value.trim();
  if (text) params.set("text", text);
  return params;
}

async function loadPage(cursor) {
  const params = query();
  params.set("limit", "100");
  if (cursor) params.set("cursor", cursor);
  const answer = await api(`/api/v1/jobs?${params}`);
  const body = await answer.json();
  if (!answer.ok) { $("add-result").textContent = message(body); return; }
  for (const job of body.jobs) show(job, { append: true });
  nextCursor = body.next;
  $("more").hidden = !nextCursor;
  if ($("matching").dataset.matching) showMatching(Number($("matching").dataset.matching));
}

async function reload() {
  rows.clear();
  $("jobs").tBodies[0].replaceChildren();
  listen(); // first, so nothing committed while the page loads is missed
  await loadPage(null);
  await loadCounts();
}

// ---------------------------------------------------------------- totals and matching rows

const number = (n) => Number(n).toLocaleString("en");
let countsTimer = null;

async function loadCounts() {
  const answer = await api(`/api/v1/counts?${query()}`);
  if (!answer.ok) return;
  const c = await answer.json();
  $("totals").textContent = `${number(c.queued + c.running + c.done)} jobs: ${number(c.queued)} queued, ` +
    `${number(c.running)} running, ${number(c.done)} done (${number(c.ok)} ok, ${number(c.failed)} failed)`;
  showMatching(c.matching);
}

function showMatching(matching) {
  $("matching").dataset.matching = String(matching);
  const shown = $("jobs").tBodies[0].rows.length;
  $("matching").textContent = shown < matching ? `${number(shown)} of ${number(matching)} matching shown`
    : `${number(matching)} matching`;
}

function countsSoon() {
  // Results arrive by the hundred: count again at most every 2 s.
  if (countsTimer) return;
  countsTimer = setTimeout(() => { countsTimer = null; loadCounts().catch(() => {}); }, 2000);
}

$("more").addEventListener("click", () => loadPage(nextCursor));
$("filter").addEventListener("change", reload);
let searchTimer = null;
$("search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(reload, 300); });

// ---------------------------------------------------------------- adding

$("add-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const urls = $("urls").value.split(/\s+/).filter(Boolean);
  if (!urls.length) return;
  $("add").disabled = true;
  $("rejected").replaceChildren();
  try {
    const answer = await api("/api/v1/jobs", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ urls }),
    });
    const body = await answer.json();
    if (!answer.ok) { $("add-result").textContent = message(body); return; }
    $("add-result").textContent = `${body.jobs.length} added` + (body.rejected.length ? `, ${body.rejected.length} rejected` : "");
    for (const r of body.rejected) {
      const li = document.createElement("li");
      li.textContent = `${r.input}: ${r.reason}`;
      $("rejected").appendChild(li);
    }
    if (body.batch) $("cancel-batch").value = body.batch.id; // the batch to take back, if it was the wrong one
    for (const job of body.jobs) {
      if (!rows.has(job.id)) show({ id: job.id, url: job.url, state: "queued", batch: body.batch && body.batch.name });
    }
    $("urls").value = "";
    countsSoon();
  } finally {
    $("add").disabled = false;
  }
});

// ---------------------------------------------------------------- cancelling a batch (asks first, with the count)

let cancelling = null; // the batch id the question is about

$("cancel-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = $("cancel-batch").value.trim();
  $("cancel-result").textContent = "";
  const answer = await api(`/api/v1/batches/${encodeURIComponent(id)}`);
  const batch = await answer.json();
  if (!answer.ok) { $("cancel-result").textContent = message(batch); return; }
  if (!batch.queued) { $("cancel-result").textContent = `batch ${batch.id} "${batch.name}" has no queued jobs`; return; }
  cancelling = batch.id;
  $("cancel-question").textContent = `Cancel ${batch.queued} queued job(s) of batch ${batch.id} "${batch.name}"? They will not be checked.`;
  $("cancel-confirm").hidden = false;
  $("cancel-yes").focus();
});

$("cancel-no").addEventListener("click", () => { $("cancel-confirm").hidden = true; cancelling = null; });

$("cancel-yes").addEventListener("click", async () => {
  const id = cancelling;
  $("cancel-confirm").hidden = true;
  cancelling = null;
  if (id === null) return;
  const answer = await api(`/api/v1/batches/${encodeURIComponent(id)}/cancel`, { method: "POST" });
  const body = await answer.json();
  $("cancel-result").textContent = answer.ok ? `cancelled ${body.cancelled} queued job(s) of batch ${id}` : message(body);
  if (answer.ok) reload();
});

// ---------------------------------------------------------------- live results (SSE over fetch, so the token rides in a header)

async function listen() {
  if (stream) stream.abort();
  const controller = new AbortController();
  stream = controller;
  const params = query();
  while (!controller.signal.aborted) {
    try {
      const headers = { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" };
      if (lastEventId) headers["Last-Event-ID"] = lastEventId;
      const answer = await fetch(`/api/v1/events?${params}`, { headers, signal: controller.signal });
      if (answer.status === 401) { askToken("That token was not accepted."); return; }
      if (!answer.ok || !answer.body) throw new Error(`events: ${answer.status}`);
      $("live").textContent = "live";
      $("live").className = "live on";
      document.dispatchEvent(new Event("urltester:connected")); // urls.js catches up on changes missed
      await readEvents(answer.body.getReader());
    } catch (err) {
      if (controller.signal.aborted) return;
    }
    $("live").textContent = "reconnecting";
    $("live").className = "live";
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

async function readEvents(reader) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let id = null, kind = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("id:")) id = line.slice(3).trim();
        else if (line.startsWith("event:")) kind = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trimStart();
      }
      if (id) lastEventId = id;
      if (kind === "result" && data) { show(JSON.parse(data)); countsSoon(); }
      // A URL's state moved: the by-URL and changes views (urls.js) listen for it.
      else if (kind === "change" && data) document.dispatchEvent(new CustomEvent("urltester:change", { detail: JSON.parse(data) }));
    }
  }
}

// ---------------------------------------------------------------- detail

const PHASES = ["dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "transfer_ms", "total_ms"];
const CORE = ["url", "state", "outcome", "status_code", "total_ms", "attempts", "error", "final_url", "title",
  "content_type", "bytes", "batch", "submitted_at", "started_at", "checked_at"];

async function openDetail(id) {
  const answer = await api(`/api/v1/jobs/${encodeURIComponent(id)}`);
  const job = await answer.json();
  if (!answer.ok) { $("add-result").textContent = message(job); return; }
  $("detail-title").textContent = `Job ${job.id}: ${job.url}`;
  const dl = $("detail-core");
  dl.replaceChildren();
  for (const key of CORE) {
    if (job[key] === null || job[key] === undefined) continue;
    const dt = document.createElement("dt");
    dt.textContent = key;
    const dd = document.createElement("dd");
    dd.textContent = String(job[key]);
    dl.append(dt, dd);
  }
  const phases = $("phases").tBodies[0];
  phases.replaceChildren();
  for (const key of PHASES) {
    const tr = document.createElement("tr");
    cell(tr, key.replace(/_ms$/, ""));
    cell(tr, job[key] === null || job[key] === undefined ? "–" : Number(job[key]).toFixed(1));
    phases.appendChild(tr);
  }
  const list = $("redirects");
  list.replaceChildren();
  for (const hop of job.redirects || []) {
    const li = document.createElement("li");
    li.textContent = `${hop.status} → ${hop.url}`;
    list.appendChild(li);
  }
  list.hidden = !(job.redirects || []).length;
  $("no-redirects").hidden = !list.hidden;
  // A crawl's: the pages that link to this URL, with the link's text (strangers' text: textContent).
  const referrers = $("referrers");
  referrers.replaceChildren();
  for (const r of job.referrers || []) {
    const li = document.createElement("li");
    li.textContent = r.text ? `${r.url} "${r.text}"` : r.url;
    referrers.appendChild(li);
  }
  $("referrers-section").hidden = !(job.referrers || []).length;
  $("detail-json").textContent = JSON.stringify(job, null, 2);
  $("retest").dataset.id = String(job.id);
  $("retest-result").textContent = "";
  $("url-detail").hidden = true; // one drawer at a time
  $("detail").hidden = false;
  document.body.classList.add("detail-open");
}

$("close").addEventListener("click", () => {
  $("detail").hidden = true;
  document.body.classList.remove("detail-open");
});

$("retest").addEventListener("click", async () => {
  const id = $("retest").dataset.id;
  $("retest").disabled = true;
  try {
    const answer = await api(`/api/v1/jobs/${encodeURIComponent(id)}/retest`, { method: "POST" });
    const body = await answer.json();
    if (!answer.ok) { $("retest-result").textContent = message(body); return; }
    for (const job of body.jobs) {
      if (!rows.has(job.id)) show({ id: job.id, url: job.url, state: "queued", batch: body.batch && body.batch.name });
    }
    $("retest-result").textContent = `re-testing as job ${body.jobs.map((j) => j.id).join(", ")}`;
    countsSoon();
  } finally {
    $("retest").disabled = false;
  }
});

// ---------------------------------------------------------------- export: every matching job, as the list's CSV

$("export").addEventListener("click", async () => {
  const answer = await api(`/api/v1/jobs?${query()}`, { headers: { Accept: "text/csv" } });
  if (!answer.ok) { $("add-result").textContent = message(await answer.json()); return; }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await answer.blob());
  link.download = `urltester-${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, "")}.csv`;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
});

// ---------------------------------------------------------------- start

function start() {
  if (!token()) { askToken(""); return; }
  $("login").hidden = true;
  $("main").hidden = false;
  $("forget").hidden = false;
  reload();
  document.dispatchEvent(new Event("urltester:start"));
}

start();
