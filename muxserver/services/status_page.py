"""The status page served at ``/`` by :class:`~muxserver.services.status.StatusService`.

One self-contained HTML document -- markup, style and a little JavaScript, no external
assets -- that polls ``/status.json`` every second and renders the summary, the services'
totals, the dispatch pools and one page of the connection table (sorted and filtered by the
server). Everything it shows comes from ``/status.json``; this module holds only the document.
"""

from __future__ import annotations

__all__ = ["status_page"]


def status_page(title: str) -> str:
    """The page's HTML, with ``title`` (the service's name, HTML-escaped here) in its heading."""
    return _PAGE.replace("__TITLE__", _html_escape(title))


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__ status</title>
<style>
body{font:14px system-ui,sans-serif;margin:1em 2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}
th,td{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}
th{background:#f3f3f3;white-space:nowrap}
td.t,th.t{text-align:left}
#connections th{cursor:pointer}
#connections th.sorted{background:#dde8ff}
.muted{color:#777}
</style></head><body>
<h1>__TITLE__ <small class="muted">pid <span id="pid">?</span>,
<span id="state">?</span></small></h1>
<p id="summary" class="muted">loading...</p>
<h2>Services</h2>
<table id="services"><thead><tr><th class="t">service</th><th class="t">addresses</th>
<th>open</th><th>requests</th><th>errors</th><th>bytes in</th><th>bytes out</th>
<th>timeouts</th><th>refused</th></tr></thead><tbody></tbody></table>
<h2>Dispatch</h2>
<table id="dispatch"><thead><tr><th class="t">strategy</th><th>busy</th><th>queued</th>
<th>capacity</th><th>completed</th><th>failed</th></tr></thead><tbody></tbody></table>
<h2>Connections <small class="muted" id="states"></small></h2>
<p><button id="prev">&lsaquo; prev</button> <span id="pageinfo"></span>
<button id="next">next &rsaquo;</button>
state <select id="filter"><option value="">all</option></select></p>
<table id="connections"><thead><tr>
<th data-sort="id">id</th><th class="t" data-sort="service">service</th>
<th class="t" data-sort="client">client</th><th class="t" data-sort="peer">peer</th>
<th class="t" data-sort="state">state</th><th class="t" data-sort="handler">request</th>
<th data-sort="buffered_in">buffered in</th><th data-sort="bytes_in">bytes in</th>
<th data-sort="bytes_out">bytes out</th><th data-sort="requests">requests</th>
<th data-sort="in_flight">in flight</th><th data-sort="age">age s</th>
<th data-sort="idle">idle s</th></tr></thead><tbody></tbody></table>
<p class="muted">updated <span id="updated">never</span>
(#<span id="sequence">0</span>, every second)</p>
<script>
"use strict";
const view = {page: 1, size: 50, sort: "id", state: ""};
const cols = ["id", "service", "client", "peer", "state", "handler", "buffered_in",
              "bytes_in", "bytes_out", "requests", "in_flight", "age", "idle"];
const left = new Set(["service", "client", "peer", "state", "handler"]);
function $(id) { return document.getElementById(id); }
function fill(tbody, rows, cells, cls) {
  const body = document.createElement("tbody");
  for (const row of rows) {
    const tr = document.createElement("tr");
    if (cls) tr.className = cls;
    for (const [name, value] of cells(row)) {
      const td = document.createElement("td");
      td.textContent = value === null || value === undefined ? "" : String(value);
      td.dataset.col = name;
      if (left.has(name) || name === "addresses" || name === "name") td.className = "t";
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  tbody.replaceWith(body);
}
function render(d) {
  $("pid").textContent = d.pid;
  $("state").textContent = d.state;
  const c = d.connections;
  let text = `${c.open} open connections, ${c.accepted} accepted, ${c.closed} closed`;
  if (d.loop) text += `; loop pass p50 ${d.loop.p50_ms} ms, p99 ${d.loop.p99_ms} ms`;
  $("summary").textContent = text;
  $("summary").dataset.open = c.open;
  $("states").textContent = Object.entries(c.by_state).filter(e => e[1])
    .map(e => `${e[0]} ${e[1]}`).join(", ");
  const filter = $("filter");
  if (filter.options.length === 1) {
    for (const s of Object.keys(c.by_state)) filter.add(new Option(s, s));
  }
  fill(document.querySelector("#services tbody"), d.services, s => [
    ["name", s.name], ["addresses", s.addresses.join(" ")], ["connections", s.connections],
    ["requests", s.requests], ["errors", s.errors], ["bytes_in", s.bytes_in],
    ["bytes_out", s.bytes_out], ["timeouts", s.timeouts], ["refused", s.refused]]);
  fill(document.querySelector("#dispatch tbody"), d.dispatch, s => [
    ["name", s.name], ["busy", s.busy], ["queued", s.queued], ["capacity", s.capacity || ""],
    ["completed", s.completed === undefined ? "" : s.completed],
    ["failed", s.failed === undefined ? "" : s.failed]]);
  fill(document.querySelector("#connections tbody"), d.rows,
       r => cols.map(name => [name, r[name]]), "conn");
  const p = d.page;
  $("pageinfo").textContent = `page ${p.number} of ${p.pages} (${p.total} rows)`;
  $("prev").disabled = p.number <= 1;
  $("next").disabled = p.number >= p.pages;
  for (const th of document.querySelectorAll("#connections th")) {
    const sorted = view.sort.replace("-", "") === th.dataset.sort;
    th.classList.toggle("sorted", sorted);
    th.textContent = th.textContent.replace(/ [\u25b2\u25bc]$/, "") +
      (sorted ? (view.sort.startsWith("-") ? " \u25bc" : " \u25b2") : "");
  }
  $("updated").textContent = new Date().toLocaleTimeString();
  $("sequence").textContent = d.sequence;
}
let timer = null;
async function refresh() {
  clearTimeout(timer);
  const q = new URLSearchParams({page: view.page, size: view.size, sort: view.sort,
                                 state: view.state});
  try {
    const answer = await fetch("status.json?" + q, {cache: "no-store"});
    const d = await answer.json();
    if (d.page && view.page > d.page.pages) { view.page = d.page.pages; }
    render(d);
  } catch (e) {
    $("summary").textContent = "cannot reach the server: " + e;
  }
  timer = setTimeout(refresh, 1000);
}
for (const th of document.querySelectorAll("#connections th")) {
  th.addEventListener("click", () => {
    view.sort = view.sort === th.dataset.sort ? "-" + th.dataset.sort : th.dataset.sort;
    view.page = 1;
    refresh();
  });
}
$("prev").addEventListener("click", () => { view.page = Math.max(1, view.page - 1); refresh(); });
$("next").addEventListener("click", () => { view.page += 1; refresh(); });
$("filter").addEventListener("change", e => { view.state = e.target.value; view.page = 1;
                                              refresh(); });
refresh();
</script></body></html>
"""
