// mechgraph view: the page. Draws with cytoscape.js and Chart.js (served from their npm packages);
// every piece of data comes from this server's /api, one bounded page per request.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const state = { facets: null, limits: null, promptMaxAbs: 0, promptPage: null, evalChart: null, timelineChart: null };
window.mechgraph = state; // for the browser tests and the console

async function api(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  const res = await fetch(url, { headers: { "X-Mechgraph-Token": TOKEN } });
  const body = await res.json();
  if (!res.ok) throw new Error(body.detail || res.statusText);
  return body;
}

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const fmt = (x) => (typeof x === "number" ? (Number.isInteger(x) ? String(x) : Math.abs(x) >= 1000 || (x !== 0 && Math.abs(x) < 0.01) ? x.toExponential(2) : x.toFixed(3)) : esc(x));
function status(text) { $("status").textContent = text; }
function option(sel, value, text) { const o = document.createElement("option"); o.value = value; o.textContent = text ?? value; sel.appendChild(o); }

// ---- colours and styles ------------------------------------------------------------------------
const PALETTE = ["#4C8EDA", "#F79767", "#8DCC93", "#C990C0", "#FFC454", "#57C7E3", "#DA7194", "#569480", "#D9C8AE", "#F16667", "#A5ABB6", "#FFE081"];
function colourOf(group) {
  if (!group) return "#9ca3af";
  let h = 0;
  for (const ch of group) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}
const KIND_SHAPE = { Feature: "ellipse", feature: "ellipse", ErrorNode: "diamond", error: "diamond", Input: "round-rectangle", token: "round-rectangle",
  Output: "star", target: "star", Head: "hexagon", ROI: "octagon", Community: "octagon", group: "round-rectangle" };

function graphStyle() {
  return [
    { selector: "node", style: { "background-color": "data(colour)", shape: "data(shape)", label: "data(label)", "font-size": 8, width: "data(size)", height: "data(size)", "text-valign": "bottom", color: "#374151" } },
    { selector: "node:parent", style: { "background-opacity": 0.08, "border-color": "data(colour)", "border-width": 2, label: "data(label)", "text-valign": "top" } },
    { selector: "node:selected", style: { "border-width": 3, "border-color": "#111827" } },
    { selector: "edge", style: { width: "data(width)", "line-color": "data(colour)", "target-arrow-color": "data(colour)", "target-arrow-shape": "triangle", "arrow-scale": 0.6, "curve-style": "bezier", opacity: 0.75 } },
    { selector: "edge.match", style: { "line-style": "dashed", "line-color": "#6b7280", "target-arrow-shape": "none", width: 2 } },
  ];
}
function edgeStyle(w, maxAbs) {
  const frac = maxAbs > 0 ? Math.abs(w) / maxAbs : 0;
  return { width: 0.5 + 6 * frac, colour: w >= 0 ? "#2563eb" : "#dc2626" };
}

// ---- tabs ----------------------------------------------------------------------------------------
function showTab(name) {
  for (const b of document.querySelectorAll("button.tab")) b.classList.toggle("active", b.dataset.tab === name);
  for (const p of document.querySelectorAll(".page")) p.classList.toggle("active", p.id === "tab-" + name);
  if (name === "prompt") state.promptCy.resize();
  if (name === "explore") state.exploreCy.resize();
  if (name === "evals") loadEvaluations().catch((e) => status(e.message));
}

// ---- details panel (shared) ----------------------------------------------------------------------
function edgeTable(rows, key, dir) {
  if (!rows.length) return "<p class='muted'>none under the current filters</p>";
  return "<table>" + rows.map((e) => {
    const other = dir === "in" ? e.source : e.target;
    return `<tr><td class="${e.weight >= 0 ? "pos" : "neg"}">${fmt(e.weight)}</td><td class="key">${esc(other)}</td><td>${esc(e.task ?? "")}</td></tr>`;
  }).join("") + "</table>";
}
function propsTable(props) {
  const skip = new Set(["nid"]);
  return "<table>" + Object.entries(props).filter(([k]) => !skip.has(k)).sort().map(([k, v]) => {
    const text = Array.isArray(v) ? (v.length > 20 ? JSON.stringify(v.slice(0, 20)) + " …" : JSON.stringify(v)) : (typeof v === "number" ? fmt(v) : esc(v));
    return `<tr><th>${esc(k)}</th><td>${text}</td></tr>`;
  }).join("") + "</table>";
}
async function showDetails(panel, key, filters, extra) {
  panel.dataset.key = key;
  panel.innerHTML = "<p class='muted'>loading…</p>";
  const d = await api("/api/node", { key, ...(filters || {}) });
  const p = d.props;
  let html = `<h4>${esc(d.labels.join(":"))}</h4><p class="key">${esc(key)}</p>`;
  html += `<p>activation: <b>${fmt(p.activation ?? "n/a")}</b></p>`;
  html += `<p>description: ${esc(p.description ?? "(none stored)")}</p>`;
  const contexts = p.top_contexts ?? p.contexts ?? p.examples;
  html += `<p>top contexts: ${contexts ? esc(Array.isArray(contexts) ? contexts.slice(0, 10).join(" · ") : contexts) : "<span class='muted'>(none stored)</span>"}</p>`;
  if (extra) html += extra;
  html += `<h5>in-edges (strongest)</h5>${edgeTable(d.incoming, key, "in")}<h5>out-edges (strongest)</h5>${edgeTable(d.outgoing, key, "out")}`;
  if (d.matches && d.matches.length) {
    html += "<h5>MATCHES (other checkpoints / sizes)</h5><table>" + d.matches.map((m) =>
      `<tr><td>${esc(m.direction)}</td><td>${esc(m.model)}@${esc(m.checkpoint)}</td><td>${fmt(m.score)}</td><td><button class="compare" data-key="${esc(m.other)}" data-checkpoint="${esc(m.checkpoint)}">compare</button></td></tr>`).join("") + "</table>";
  }
  html += "<h5>all properties</h5>" + propsTable(p);
  panel.innerHTML = html;
  return d;
}

// ---- prompt graph --------------------------------------------------------------------------------
async function loadPrompts() {
  const { prompts } = await api("/api/prompts", { limit: 200 });
  const sel = $("prompt-select");
  sel.innerHTML = "";
  for (const p of prompts) option(sel, p.prompt, `${p.text.slice(0, 60)} (${p.model}@${p.checkpoint}, ${p.nodes} nodes)`);
  if (prompts.length) await loadPrompt(true);
  else $("prompt-status").textContent = "no prompt graphs stored (mechgraph trace writes them)";
}

let promptTimer = null;
function promptSoon() { clearTimeout(promptTimer); promptTimer = setTimeout(() => loadPrompt(false).catch((e) => status(e.message)), 200); }

async function loadPrompt(fresh) {
  const prompt = $("prompt-select").value;
  if (!prompt) return;
  const nodeThreshold = parseFloat($("node-threshold").value);
  const edgeFrac = fresh ? 0 : parseFloat($("edge-threshold").value);
  if (fresh) { $("edge-threshold").value = 0; state.promptMaxAbs = 0; }
  const minAbs = edgeFrac * state.promptMaxAbs;
  const groupRun = $("prompt-groups").value;
  const page = await api("/api/prompt", { prompt, node_threshold: nodeThreshold, min_abs_weight: minAbs,
    node_limit: state.limits.max_nodes, edge_limit: state.limits.max_edges, group_run: groupRun || "*" });
  if (fresh) state.promptMaxAbs = Math.max(0, ...page.edges.map((e) => Math.abs(e.weight)));
  state.promptPage = page;
  $("node-threshold-out").textContent = nodeThreshold.toFixed(2);
  $("edge-threshold-out").textContent = fmt(minAbs);
  $("prompt-text").textContent = `“${page.prompt.text}” — ${page.prompt.model}@${page.prompt.checkpoint}, task ${page.prompt.task}; replacement score ${fmt(page.prompt.replacement_score ?? NaN)}, completeness ${fmt(page.prompt.completeness_score ?? NaN)}`;
  drawPrompt(page, !!groupRun);
}

function drawPrompt(page, merge) {
  const cy = state.promptCy;
  const tokens = page.prompt.token_strs || [];
  // Layout: x by token position, y by layer (targets on top, tokens at the bottom); nodes sharing a
  // (layer, position) cell are spread across the cell.
  const cells = {};
  for (const n of page.nodes) (cells[`${n.layer}|${n.position}`] ||= []).push(n);
  const COL = 120, ROW = 70;
  const pos = {};
  for (const members of Object.values(cells)) {
    members.sort((a, b) => (a.influence ?? 0) - (b.influence ?? 0));
    members.forEach((n, i) => {
      const spread = Math.min(COL * 0.8, 14 * members.length);
      const dx = members.length > 1 ? -spread / 2 + (spread * i) / (members.length - 1) : 0;
      pos[n.key] = { x: n.position * COL + dx, y: -n.layer * ROW };
    });
  }
  // Supernodes: nodes whose occurrence belongs to the same community/ROI merge into one node.
  const rep = {};
  const elements = [];
  const groups = {};
  for (const n of page.nodes) {
    const g = merge && n.group && (n.kind === "feature" || n.kind === "error") ? n.group : null;
    if (g) { (groups[g] ||= []).push(n); rep[n.key] = "g:" + g; continue; }
    rep[n.key] = n.key;
    const label = n.kind === "token" ? (n.text || tokens[n.position] || "") : n.kind === "target" ? (n.label || "target") :
      n.kind === "error" ? `err L${n.layer}` : `L${n.layer}#${n.index}`;
    elements.push({ group: "nodes", data: { id: n.key, label, kind: n.kind, colour: n.kind === "target" ? "#111827" : n.kind === "token" ? "#d1d5db" : colourOf(n.group),
      shape: KIND_SHAPE[n.kind] || "ellipse", size: n.kind === "feature" ? 10 + 10 * Math.max(0, 1 - (n.influence ?? 1)) : 14 }, position: pos[n.key] });
  }
  for (const [g, members] of Object.entries(groups)) {
    const x = members.reduce((s, n) => s + pos[n.key].x, 0) / members.length;
    const y = members.reduce((s, n) => s + pos[n.key].y, 0) / members.length;
    elements.push({ group: "nodes", data: { id: "g:" + g, label: `${g.split("|").slice(-2).join("#")} (${members.length})`, kind: "group", colour: colourOf(g), shape: "round-rectangle", size: 18 + 2 * Math.sqrt(members.length) }, position: { x, y } });
  }
  const merged = {};
  for (const e of page.edges) {
    const s = rep[e.source], t = rep[e.target];
    if (!s || !t || s === t) continue;
    const id = s + "->" + t;
    (merged[id] ||= { source: s, target: t, weight: 0 }).weight += e.weight;
  }
  const maxAbs = Math.max(1e-12, ...Object.values(merged).map((e) => Math.abs(e.weight)));
  for (const [id, e] of Object.entries(merged)) {
    const st = edgeStyle(e.weight, maxAbs);
    elements.push({ group: "edges", data: { id, source: e.source, target: e.target, weight: e.weight, width: st.width, colour: st.colour } });
  }
  cy.elements().remove();
  cy.add(elements);
  cy.layout({ name: "preset", fit: true, padding: 20 }).run();
  const drawn = cy.nodes().length;
  $("prompt-status").textContent = `${drawn} nodes, ${cy.edges().length} edges drawn (${page.nodes.length} prompt nodes, ${page.edges.length} edges in this page)`;
  $("prompt-cy").dataset.nodes = String(drawn);
  $("prompt-cy").dataset.edges = String(cy.edges().length);
}

async function promptNodeDetails(key) {
  const n = state.promptPage && state.promptPage.nodes.find((x) => x.key === key);
  let extra = "";
  if (n && n.feature) {
    try {
      const f = await api("/api/node", { key: n.feature });
      extra = `<p>occurrence of <span class="key">${esc(n.feature)}</span>; description: ${esc(f.props.description ?? "(none stored)")}</p>`;
    } catch (e) { extra = `<p class="muted">occurrence of ${esc(n.feature)} (not in the task graph)</p>`; }
  }
  await showDetails($("prompt-details"), key, {}, extra);
}

// ---- task graph explorer -----------------------------------------------------------------------
function filters() {
  return { model: $("f-model").value, checkpoint: $("f-checkpoint").value, task: $("f-task").value, run: $("f-run").value,
    granularity: $("f-granularity").value, min_abs_weight: $("f-weight").value || 0 };
}

function fillFacets(f) {
  const m = $("f-model"); m.innerHTML = ""; option(m, "*", "any");
  for (const name of Object.keys(f.models)) option(m, name);
  const t = $("f-task"); t.innerHTML = ""; option(t, "*", "any");
  for (const name of f.tasks) option(t, name);
  const r = $("f-run"); r.innerHTML = ""; option(r, "*", "any");
  const g = $("f-groups"), pg = $("prompt-groups");
  for (const run of f.runs) {
    if (run.kind === "ingest" || run.kind === "roi" || run.kind === "trace" || run.kind === "replacement") option(r, run.run, `${run.run} (${run.kind})`);
    if (run.kind === "communities" || run.kind === "roi") { option(g, run.run, `${run.run} (${run.kind})`); option(pg, run.run, `${run.run} (${run.kind})`); }
  }
  const gr = $("f-granularity"); gr.innerHTML = ""; option(gr, "*", "any");
  for (const x of state.limits.granularities) option(gr, x);
  const tm = $("timeline-model"); tm.innerHTML = "";
  for (const name of Object.keys(f.models)) option(tm, name);
  fillCheckpoints();
}
function fillCheckpoints() {
  const c = $("f-checkpoint"); c.innerHTML = ""; option(c, "*", "any");
  const model = $("f-model").value;
  const all = model === "*" ? [...new Set(Object.values(state.facets.models).flat())] : (state.facets.models[model] || []);
  for (const name of all) option(c, name);
}

function addPage(page, centre) {
  const cy = state.exploreCy;
  const before = cy.nodes().length;
  const maxAbs = Math.max(1e-12, ...page.edges.map((e) => Math.abs(e.weight)));
  const add = [];
  for (const n of page.nodes) {
    if (cy.getElementById(n.key).nonempty()) continue;
    add.push({ group: "nodes", data: { id: n.key, label: n.kind === "Feature" ? `L${n.layer}#${n.index}` : `${n.kind} L${n.layer ?? ""}`,
      kind: n.kind, group: n.group, colour: colourOf(n.group), shape: KIND_SHAPE[n.kind] || "ellipse", size: 14 } });
  }
  cy.add(add);
  for (const e of page.edges) {
    const id = `${e.source}->${e.target}|${e.run}|${e.task}|${e.granularity}`;
    if (cy.getElementById(id).nonempty()) continue;
    const st = edgeStyle(e.weight, maxAbs);
    cy.add({ group: "edges", data: { id, source: e.source, target: e.target, weight: e.weight, width: st.width, colour: st.colour } });
  }
  const added = cy.nodes().length - before;
  const opts = { name: "cose", animate: false, fit: true, padding: 20, randomize: false, nodeRepulsion: () => 6000, numIter: 500 };
  cy.layout(opts).run();
  if (centre) { cy.$(":selected").unselect(); cy.getElementById(centre).select(); }
  $("explore-status").textContent = `${cy.nodes().length} nodes, ${cy.edges().length} edges (+${added} nodes)`;
  $("explore-cy").dataset.nodes = String(cy.nodes().length);
  return added;
}

async function expand(key) {
  status("expanding " + key);
  const page = await api("/api/neighbourhood", { key, ...filters(), group_run: $("f-groups").value, limit: 30 });
  const added = addPage(page, key);
  status(`expanded: +${added} nodes`);
}

async function search() {
  const q = $("search").value.trim();
  if (!q) return;
  const f = filters();
  const { results } = await api("/api/search", { q, model: f.model, checkpoint: f.checkpoint, limit: 25 });
  const box = $("search-results");
  box.innerHTML = results.length ? "" : "<span class='muted'>no match</span>";
  for (const r of results) {
    const b = document.createElement("button");
    b.textContent = `${r.kind}: ${r.key}${r.description ? " — " + r.description.slice(0, 50) : ""}`;
    b.dataset.key = r.key;
    b.className = "search-hit";
    b.onclick = () => expand(r.key).catch((e) => status(e.message));
    box.appendChild(b);
  }
}

async function compare(otherKey, otherCheckpoint, key) {
  // The same feature at another checkpoint: its neighbourhood under the other checkpoint, a
  // dashed MATCHES edge between the two, and both edge lists side by side.
  const f = filters();
  const mine = await api("/api/node", { key, ...f });
  const theirs = await api("/api/node", { key: otherKey, ...f, checkpoint: otherCheckpoint });
  const page = await api("/api/neighbourhood", { key: otherKey, ...f, checkpoint: otherCheckpoint, group_run: $("f-groups").value, limit: 30 });
  addPage(page, otherKey);
  const cy = state.exploreCy;
  const id = `match:${key}:${otherKey}`;
  if (cy.getElementById(id).empty() && cy.getElementById(key).nonempty()) cy.add({ group: "edges", classes: "match", data: { id, source: key, target: otherKey, width: 2, colour: "#6b7280" } });
  $("explore-details").innerHTML = `<h4>compare</h4><table><tr><th>${esc(mine.props.checkpoint)}</th><th>${esc(theirs.props.checkpoint)}</th></tr>
    <tr><td>${edgeTable(mine.outgoing, key, "out")}</td><td>${edgeTable(theirs.outgoing, otherKey, "out")}</td></tr>
    <tr><td>${edgeTable(mine.incoming, key, "in")}</td><td>${edgeTable(theirs.incoming, otherKey, "in")}</td></tr></table>`;
}

// ---- evaluations ---------------------------------------------------------------------------------
let evalsLoaded = false;
async function loadEvaluations() {
  if (evalsLoaded) return;
  evalsLoaded = true;
  const { evaluations } = await api("/api/evaluations");
  const list = $("eval-list");
  list.innerHTML = evaluations.length ? "<table><tr><th>model</th><th>task</th><th>ablation</th><th>CPR</th><th>CMD</th></tr>" +
    evaluations.map((e, i) => `<tr data-i="${i}"><td>${esc(e.model)}@${esc(e.checkpoint)}</td><td>${esc(e.task)}</td><td>${esc(e.ablation)}</td><td>${fmt(e.cpr)}</td><td>${fmt(e.cmd)}</td></tr>`).join("") + "</table>"
    : "<p class='muted'>no evaluations stored (mechgraph evaluate writes them)</p>";
  for (const tr of list.querySelectorAll("tr[data-i]")) tr.onclick = () => showCurve(evaluations[+tr.dataset.i]).catch((e) => status(e.message));
  if (evaluations.length) await showCurve(evaluations[0]);
  const d = await api("/api/disentanglement");
  const sel = $("kill-run"); sel.innerHTML = "";
  for (const r of d.runs) option(sel, r.run, `${r.run} (${r.model}@${r.checkpoint}; NMI ${fmt(r.nmi)})`);
  sel.value = d.run;
  drawKill(d);
  if ($("timeline-model").value) await loadTimeline();
}

async function showCurve(e) {
  const { points } = await api("/api/evaluation", { run: e.run });
  const series = {};
  for (const p of points) (series[p.ablation] ||= []).push(p);
  const datasets = [];
  const colours = { edge: "#2563eb", node: "#f59e0b" };
  for (const [ablation, pts] of Object.entries(series)) {
    datasets.push({ label: `${ablation}: faithfulness`, data: pts.map((p) => ({ x: p.edges, y: p.faithfulness })), borderColor: colours[ablation] || "#6b7280", showLine: true });
    datasets.push({ label: `${ablation}: completeness`, data: pts.map((p) => ({ x: p.edges, y: p.completeness })), borderColor: colours[ablation] || "#6b7280", borderDash: [5, 4], showLine: true });
  }
  if (state.evalChart) state.evalChart.destroy();
  state.evalChart = new Chart($("eval-chart"), { type: "scatter", data: { datasets },
    options: { animation: false, scales: { x: { type: "logarithmic", title: { display: true, text: "edges kept" } }, y: { title: { display: true, text: "F" } } },
      plugins: { title: { display: true, text: `${e.model}@${e.checkpoint} ${e.task} (run ${e.run})` } } } });
  $("eval-png").innerHTML = e.png ? `<p class="muted">stored plot: ${esc(e.png)}</p><img alt="evaluation plot" src="/api/png?path=${encodeURIComponent(e.png)}&token=${encodeURIComponent(TOKEN)}">` : "";
}

function drawKill(d) {
  const box = $("kill-table");
  if (!d.communities.length) { box.innerHTML = "<p class='muted'>no disentanglement stored (mechgraph disentangle writes it)</p>"; return; }
  const tasks = d.communities[0].tasks || [];
  const cell = (v) => v === null || v === undefined ? "<td></td>" : `<td style="background: rgba(220,38,38,${Math.max(0, Math.min(1, 1 - v)).toFixed(2)})">${fmt(v)}</td>`;
  box.innerHTML = "<table><tr><th>community</th><th>size</th><th>dominant</th><th>purity</th>" + tasks.map((t) => `<th>kill → ${esc(t)}</th>`).join("") + tasks.map((t) => `<th>keep only → ${esc(t)}</th>`).join("") + "</tr>" +
    d.communities.map((c) => `<tr><td class="key">${esc(c.community.split("|").slice(-1))}</td><td>${c.size}</td><td>${esc(c.dominant_task)}</td><td>${fmt(c.purity)}</td>` +
      tasks.map((_, i) => cell((c.kill_edge || [])[i])).join("") + tasks.map((_, i) => cell((c.keep_edge || [])[i])).join("") + "</tr>").join("") + "</table>" +
    `<p class="muted">NMI ${fmt(d.communities[0].nmi)}, ARI ${fmt(d.communities[0].ari)}, z ${fmt(d.communities[0].z)}</p>`;
}

async function loadTimeline() {
  const model = $("timeline-model").value;
  $("timeline-status").textContent = "computing…";
  let t;
  try { t = await api("/api/timeline", { model }); } catch (e) { $("timeline-status").textContent = e.message; return; }
  const finals = [...new Set(t.rows.map((r) => r.final))];
  const byTask = {};
  for (const r of t.rows) (byTask[r.dominant_task || "none"] ||= []).push({ x: r.step, y: finals.indexOf(r.final), r: 3 + 10 * (r.purity || 0) });
  if (state.timelineChart) state.timelineChart.destroy();
  state.timelineChart = new Chart($("timeline-chart"), { type: "bubble", data: { datasets: Object.entries(byTask).map(([task, data]) => ({ label: task, data, backgroundColor: colourOf(task) })) },
    options: { animation: false, scales: { x: { type: "logarithmic", title: { display: true, text: "checkpoint step" } },
      y: { reverse: true, ticks: { callback: (v) => (finals[v] ? "#" + finals[v].split("|").slice(-1) : "") }, title: { display: true, text: "final community" } } } } });
  $("timeline-status").textContent = `${finals.length} final communities over steps ${t.steps.join(", ")}`;
}

// ---- start ---------------------------------------------------------------------------------------
async function main() {
  state.promptCy = cytoscape({ container: $("prompt-cy"), style: graphStyle(), wheelSensitivity: 0.3 });
  state.exploreCy = cytoscape({ container: $("explore-cy"), style: graphStyle(), wheelSensitivity: 0.3 });
  state.promptCy.on("tap", "node", (ev) => { if (ev.target.data("kind") !== "group") promptNodeDetails(ev.target.id()).catch((e) => status(e.message)); });
  state.exploreCy.on("tap", "node", (ev) => showDetails($("explore-details"), ev.target.id(), filters()).catch((e) => status(e.message)));
  state.exploreCy.on("dbltap", "node", (ev) => expand(ev.target.id()).catch((e) => status(e.message)));
  $("explore-details").addEventListener("click", (ev) => {
    const b = ev.target.closest("button.compare");
    const shown = $("explore-details").dataset.key;
    if (b && shown) compare(b.dataset.key, b.dataset.checkpoint, shown).catch((e) => status(e.message));
  });
  for (const b of document.querySelectorAll("button.tab")) b.onclick = () => showTab(b.dataset.tab);
  $("prompt-select").onchange = () => loadPrompt(true).catch((e) => status(e.message));
  $("prompt-groups").onchange = () => loadPrompt(false).catch((e) => status(e.message));
  $("node-threshold").oninput = promptSoon;
  $("edge-threshold").oninput = promptSoon;
  $("f-model").onchange = fillCheckpoints;
  $("search-go").onclick = () => search().catch((e) => status(e.message));
  $("search").onkeydown = (ev) => { if (ev.key === "Enter") search().catch((e) => status(e.message)); };
  $("load-task").onclick = async () => {
    try { addPage(await api("/api/task-graph", { ...filters(), group_run: $("f-groups").value, limit: 100 })); } catch (e) { status(e.message); }
  };
  $("clear").onclick = () => { state.exploreCy.elements().remove(); $("explore-status").textContent = ""; };
  $("kill-run").onchange = async () => drawKill(await api("/api/disentanglement", { run: $("kill-run").value }));
  $("timeline-model").onchange = () => loadTimeline();
  state.limits = await api("/api/limits");
  state.facets = await api("/api/facets");
  fillFacets(state.facets);
  showTab("prompt");
  await loadPrompts();
  state.ready = true;
  status("ready");
}
main().catch((e) => { status("error: " + e.message); state.error = e.message; });
