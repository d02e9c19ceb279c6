// The pipelogic web view: the graph (laid out by dagre, drawn as SVG elements a reader can
// name), live figures from server-sent events, a vertex's config and logs, a stream's tap.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const state = { graph: null, snap: null, selected: null, tapTimer: null, logTimer: null, tapGen: 0 };

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function sv(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function secs(x) { return x == null ? null : x >= 1 ? x.toFixed(2) + " s" : (x * 1000).toFixed(x >= 0.01 ? 0 : 1) + " ms"; }
function rate(x) { return x == null ? "-" : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2); }
function bytes(n) {
  if (!n) return "0 B";
  const u = ["B", "KB", "MB", "GB"]; let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (n >= 100 ? n.toFixed(0) : n.toFixed(1)) + " " + u[i];
}
async function getJSON(url, opts) {
  const r = await fetch(url, opts);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// -- the graph ------------------------------------------------------------------------------

function layout(graph) {
  const g = new dagre.graphlib.Graph({ multigraph: true });
  g.setGraph({ rankdir: "LR", nodesep: 40, ranksep: 110, edgesep: 20, marginx: 10, marginy: 10 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const v of graph.vertices) g.setNode(v.name, { width: 215, height: 78 });
  for (const e of graph.edges) g.setEdge(e.from, e.to, { width: 170, height: 30, labelpos: "c" }, e.id);
  dagre.layout(g);
  return g;
}

function drawGraph(graph) {
  const g = layout(graph);
  const svg = document.getElementById("graph");
  svg.textContent = "";
  const size = g.graph();
  // Scaled to fit the pane (never above its own size: small graphs stay readable).
  svg.setAttribute("viewBox", `0 0 ${size.width + 20} ${size.height + 20}`);
  svg.setAttribute("preserveAspectRatio", "xMidYMin meet");
  svg.style.maxWidth = `${size.width + 20}px`;
  svg.style.maxHeight = `${size.height + 20}px`;
  const defs = sv("defs");
  const marker = sv("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
  marker.appendChild(sv("path", { d: "M0,0 L10,5 L0,10 z", fill: "#9a9aa3" }));
  defs.appendChild(marker);
  svg.appendChild(defs);
  for (const e of graph.edges) {
    const lay = g.edge({ v: e.from, w: e.to, name: e.id });
    const pts = lay.points;
    const d = "M" + pts.map(p => `${p.x},${p.y}`).join(" L");
    const grp = sv("g", { class: "edge", "data-edge": e.id, "data-stream": e.stream, role: "button", tabindex: 0 });
    grp.appendChild(sv("title", {}, `${e.stream} -> ${e.to}.${e.input} (${e.type})`));
    grp.appendChild(sv("path", { d, "marker-end": "url(#arrow)" }));
    grp.appendChild(sv("path", { d, stroke: "transparent", "stroke-width": 14, style: "stroke: transparent" }));
    const lx = lay.x, ly = lay.y;
    grp.appendChild(sv("rect", { class: "label-bg", x: lx - 80, y: ly - 15, width: 160, height: 30, rx: 4 }));
    const t1 = sv("text", { class: "label rate", x: lx, y: ly - 2, "text-anchor": "middle" }, "0 msg/s");
    const t2 = sv("text", { class: "label queue", x: lx, y: ly + 11, "text-anchor": "middle" }, `queue 0/${e.capacity}`);
    grp.append(t1, t2);
    grp.addEventListener("click", () => selectEdge(e.id));
    grp.addEventListener("keydown", ev => { if (ev.key === "Enter" || ev.key === " ") selectEdge(e.id); });
    svg.appendChild(grp);
  }
  for (const v of graph.vertices) {
    const n = g.node(v.name);
    const x = n.x - n.width / 2, y = n.y - n.height / 2;
    const grp = sv("g", { class: "vertex waiting", "data-vertex": v.name, role: "button", tabindex: 0 });
    grp.appendChild(sv("rect", { x, y, width: n.width, height: n.height, rx: 8 }));
    grp.appendChild(sv("text", { class: "name", x: x + 10, y: y + 20 }, v.name));
    const kind = v.kind === "component" ? (v.component || "component") + (v.replicas > 1 ? ` x${v.replicas}` : "") : v.kind;
    grp.appendChild(sv("text", { class: "kind", x: x + 10, y: y + 36, "data-kind": kind }, kind));
    grp.appendChild(sv("text", { class: "figures", x: x + 10, y: y + 52 }, "waiting"));
    grp.appendChild(sv("text", { class: "warn", x: x + 10, y: y + 68 }, ""));
    grp.addEventListener("click", () => selectVertex(v.name));
    grp.addEventListener("keydown", ev => { if (ev.key === "Enter" || ev.key === " ") selectVertex(v.name); });
    svg.appendChild(grp);
  }
}

function vertexWarnings(fig) {
  const w = [];
  if (fig.state === "stuck") w.push(`stuck ${fig.stuck_s.toFixed(0)} s`);
  for (const [k, n] of Object.entries(fig.lost || {})) w.push(`${n} ${k.replace(/_/g, " ")}`);
  if (fig.errors) w.push(`${fig.errors} error(s)`);
  if (fig.restarts) w.push(`${fig.restarts} restart(s)`);
  if (fig.blocked) w.push("sink blocked");
  return w;
}

function applySnapshot(snap) {
  state.snap = snap;
  const badge = document.getElementById("run-state");
  badge.textContent = snap.state;
  badge.className = "badge " + snap.state;
  const alerts = document.getElementById("alerts");
  alerts.textContent = "";
  const add = (text, bad) => alerts.appendChild(el("li", { class: bad ? "bad" : "" }, text));
  if (snap.error) add("failed: " + snap.error, true);
  if (snap.store_error) add("store: " + snap.store_error, true);
  if (snap.refused) add(`${snap.refused} message(s) refused`, false);
  for (const v of state.graph.vertices) {
    const fig = snap.vertices[v.name];
    if (!fig) continue;
    const grp = document.querySelector(`.vertex[data-vertex="${CSS.escape(v.name)}"]`);
    const warn = vertexWarnings(fig);
    const sel = state.selected && state.selected.vertex === v.name ? " selected" : "";
    grp.setAttribute("class", `vertex ${fig.state}${sel}`);
    grp.setAttribute("data-state", fig.state);
    const inst = fig.instances.length ? `, ${fig.instances.filter(i => i.state !== "closed").length}/${fig.instances.length} up` : "";
    const timing = fig.tick_s != null ? `${secs(fig.tick_s)} a tick` : fig.latency_s != null ? `${secs(fig.latency_s)} from the source` : "";
    const kindText = grp.querySelector(".kind");
    kindText.textContent = kindText.getAttribute("data-kind") + (timing ? " · " + timing : "");
    const figures = `${fig.state} · ${rate(fig.rate)} ticks/s${inst}`;
    grp.querySelector(".figures").textContent = figures;
    grp.querySelector(".warn").textContent = warn.join(", ");
    grp.setAttribute("aria-label", `vertex ${v.name} (${v.kind}): ${figures}, ${fig.ticks} ticks${timing ? ", " + timing : ""}${warn.length ? "; " + warn.join(", ") : ""}`);
    for (const w of warn) if (!w.includes("restart")) add(`${v.name}: ${w}`, fig.state === "stuck" || w.includes("lost") || w.includes("dead"));
  }
  for (const e of state.graph.edges) {
    const fig = snap.edges[e.id];
    if (!fig) continue;
    const grp = document.querySelector(`.edge[data-edge="${CSS.escape(e.id)}"]`);
    const full = fig.capacity && fig.queue >= fig.capacity * 0.9;
    const sel = state.selected && state.selected.edge === e.id ? " selected" : "";
    grp.setAttribute("class", "edge" + (fig.rate > 0 ? " flowing" : "") + (full ? " full" : "") + sel);
    grp.setAttribute("data-rate", fig.rate);
    grp.querySelector(".rate").textContent = `${rate(fig.rate)} msg/s · ${bytes(fig.bytes_rate)}/s`;
    grp.querySelector(".queue").textContent = `queue ${fig.queue}/${fig.capacity} · ${fig.count} sent`;
    grp.setAttribute("aria-label", `stream ${e.stream} to ${e.to}.${e.input} (${e.type}): ${rate(fig.rate)} messages/s, ` +
      `${bytes(fig.bytes_rate)}/s, queue ${fig.queue} of ${fig.capacity}, ${fig.count} sent`);
  }
  showFigures();
}

function connect() {
  const src = new EventSource("/api/events");
  src.onmessage = ev => applySnapshot(JSON.parse(ev.data));
  src.addEventListener("gone", () => {
    src.close();
    const badge = document.getElementById("run-state");
    badge.textContent = (state.snap ? state.snap.state + "; " : "") + "the broker is gone";
    badge.className = "badge gone";
  });
  src.onerror = () => {
    if (src.readyState === EventSource.CLOSED) {
      const badge = document.getElementById("run-state");
      badge.textContent = (state.snap ? state.snap.state + "; " : "") + "the broker is gone";
      badge.className = "badge gone";
    }
  };
}

// -- the panel -------------------------------------------------------------------------------

function stopPolling() {
  clearTimeout(state.tapTimer); clearTimeout(state.logTimer);
  state.tapTimer = state.logTimer = null; state.tapGen++;
}

function markSelected() {
  document.querySelectorAll(".vertex, .edge").forEach(n => n.classList.remove("selected"));
  const s = state.selected;
  const q = s.vertex ? `.vertex[data-vertex="${CSS.escape(s.vertex)}"]` : `.edge[data-edge="${CSS.escape(s.edge)}"]`;
  const n = document.querySelector(q);
  if (n) n.classList.add("selected");
}

async function selectVertex(name) {
  stopPolling();
  state.selected = { vertex: name };
  markSelected();
  const panel = document.getElementById("panel");
  panel.textContent = "";
  panel.appendChild(el("h2", {}, `vertex ${name}`));
  let d;
  try { d = await getJSON(`/api/vertex/${encodeURIComponent(name)}`); }
  catch (err) { panel.appendChild(el("p", { class: "result bad" }, String(err.message))); return; }
  panel.appendChild(el("table", { id: "vertex-figures", "aria-label": "figures" }));
  panel.appendChild(el("div", { id: "vertex-instances" }));
  showFigures();
  if (d.params) { panel.appendChild(el("h3", {}, "parameters")); panel.appendChild(el("pre", {}, JSON.stringify(d.params, null, 2))); }
  if (d.config.length) panel.appendChild(configForm(name, d));
  if (d.files.length) {
    panel.appendChild(el("h3", {}, "file slots"));
    const ft = el("table", { "aria-label": "file slots" });
    for (const f of d.files) {
      const tr = el("tr");
      tr.append(el("td", {}, f.slot), el("td", {}, f.types), el("td", {}, f.bound_to == null ? "(not bound)" : String(f.bound_to)),
                el("td", {}, (f.generated ? "generated" : "read") + (f.mutable ? ", mutable" : "")));
      ft.appendChild(tr);
    }
    panel.appendChild(ft);
  }
  if (d.kind === "component") {
    panel.appendChild(el("h3", {}, "log"));
    const pre = el("pre", { id: "log", "aria-label": "recent log lines" }, "");
    panel.appendChild(pre);
    const show = lines => { pre.textContent = lines.length ? lines.join("\n") : (d.logs_kept ? "(no lines yet)" : "(no worker logs here: this broker runs apart from its workers; in containers, docker-compose logs " + name + " has them)"); pre.scrollTop = pre.scrollHeight; };
    show(d.logs);
    const gen = state.tapGen;
    const again = async () => {
      if (gen !== state.tapGen) return;
      try { const x = await getJSON(`/api/vertex/${encodeURIComponent(name)}`); if (gen === state.tapGen) show(x.logs); } catch (err) { /* the broker went: keep what is shown */ }
      if (gen === state.tapGen) state.logTimer = setTimeout(again, 2000);
    };
    state.logTimer = setTimeout(again, 2000);
  }
}

// The selected vertex's figures, redrawn with each snapshot.
function showFigures() {
  const s = state.selected, t = document.getElementById("vertex-figures");
  const fig = s && s.vertex && state.snap && state.snap.vertices[s.vertex];
  if (!t || !fig) return;
  t.textContent = "";
  const rows = [["state", fig.state], ["ticks", fig.ticks], ["ticks/s", rate(fig.rate)], ["in flight", fig.inflight],
                ["restarts", fig.restarts], ["errors", fig.errors], ["pid", fig.pid || "-"]];
  if (fig.tick_s != null) rows.push(["time per tick (lately)", secs(fig.tick_s)]);
  if (fig.latency_s != null) rows.push(["source to sink (lately, sampled)", secs(fig.latency_s)]);
  for (const [k, x] of Object.entries(fig.lost || {})) rows.push([k.replace(/_/g, " "), x]);
  if (fig.blocked) rows.push(["blocked", fig.blocked]);
  for (const [k, x] of rows) { const tr = el("tr"); tr.append(el("th", {}, k), el("td", {}, String(x))); t.appendChild(tr); }
  const box = document.getElementById("vertex-instances");
  box.textContent = "";
  if (fig.instances.length) {
    box.appendChild(el("h3", {}, "instances"));
    const it = el("table", { "aria-label": "instances" });
    for (const i of fig.instances) { const tr = el("tr"); tr.append(el("td", {}, i.instance), el("td", {}, i.state), el("td", {}, `pid ${i.pid}`), el("td", {}, `${i.ticks} ticks`)); it.appendChild(tr); }
    box.appendChild(it);
  }
}

function configForm(name, d) {
  const form = el("form", { id: "config-form", "aria-label": `config of ${name}` });
  const heading = el("h3", {}, `config (version ${d.config_version})`);
  form.appendChild(heading);
  for (const c of d.config) {
    const id = `cfg-${c.key}`;
    const label = el("label", { for: id }, `${c.key}: ${c.type} `);
    label.appendChild(el("span", { class: "desc" }, (c.description || "") + (c.mutable ? "" : " (fixed for the run)")));
    const value = typeof c.value === "string" ? c.value : JSON.stringify(c.value);
    const text = value == null ? "" : value;
    let input;
    if (c.type === "Bool") {  // a choice, not free text
      input = el("select", { id, name: c.key, "data-initial": text });
      for (const v of ["true", "false"]) { const o = el("option", { value: v }, v); if (v === text) o.selected = true; input.appendChild(o); }
      if (!c.mutable) input.disabled = true;
    } else {
      input = el("input", { id, name: c.key, value: text, "data-initial": text });
      if (/^U?Int(8|16|32|64)$/.test(c.type)) { input.type = "number"; input.step = "1"; }
      else if (/^(Double|Float)$/.test(c.type)) { input.type = "number"; input.step = "any"; }
    }
    if (!c.mutable) { input.setAttribute("readonly", ""); input.setAttribute("aria-readonly", "true"); }
    form.append(label, input);
  }
  const button = el("button", { type: "submit" }, "apply");
  const result = el("p", { class: "result", id: "config-result", role: "status" }, "");
  form.append(button, result);
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const values = {};
    for (const input of form.querySelectorAll("input:not([readonly]), select:not([readonly])"))
      if (input.value !== input.getAttribute("data-initial")) values[input.name] = input.value;
    if (!Object.keys(values).length) { result.textContent = "nothing changed"; result.className = "result"; return; }
    result.textContent = "applying..."; result.className = "result";
    try {
      const r = await getJSON(`/api/config/${encodeURIComponent(name)}`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(values) });
      if (r.ok) {
        result.textContent = r.applied ? `applied: version ${r.version}` : `accepted: version ${r.version}${r.error ? " (" + r.error + ")" : ""}`;
        result.className = "result ok";
        heading.textContent = `config (version ${r.version})`;
        for (const [k, x] of Object.entries(values)) form.querySelector(`[name="${CSS.escape(k)}"]`).setAttribute("data-initial", x);
      } else { result.textContent = "refused: " + r.error; result.className = "result bad"; }
    } catch (err) { result.textContent = "failed: " + err.message; result.className = "result bad"; }
  });
  return form;
}

function pictureElement(pic, boxes) {
  const wrap = el("div", { class: "picture", id: "tap-picture-wrap" });
  const img = el("img", { id: "tap-picture", src: pic.src, alt: `${pic.kind} ${pic.source_width}x${pic.source_height}`,
                          "data-width": pic.source_width, "data-height": pic.source_height });
  wrap.appendChild(img);
  if (boxes && boxes.length) {
    const o = sv("svg", { viewBox: `0 0 ${pic.source_width} ${pic.source_height}`, preserveAspectRatio: "none", role: "img",
                          "aria-label": `${boxes.length} box(es)` });
    for (const b of boxes) {
      o.appendChild(sv("rect", { x: b.x, y: b.y, width: b.width, height: b.height, class: "box" }));
      o.appendChild(sv("text", { x: b.x + 2, y: Math.max(12, b.y - 3) }, `${b.label} ${(b.confidence * 100).toFixed(0)}%`));
    }
    wrap.appendChild(o);
  }
  return wrap;
}

async function selectEdge(id) {
  stopPolling();
  state.selected = { edge: id };
  markSelected();
  const e = state.graph.edges.find(x => x.id === id);
  const panel = document.getElementById("panel");
  panel.textContent = "";
  panel.appendChild(el("h2", {}, `stream ${e.stream}`));
  panel.appendChild(el("p", {}, `${e.type} -> ${e.to}.${e.input}`));
  const info = el("p", { id: "tap-info", role: "status" }, "tapping...");
  const view = el("div", { id: "tap-view" });
  const pre = el("pre", { id: "tap-value", "aria-label": "latest value" }, "");
  panel.append(info, view, pre);
  const gen = state.tapGen;
  const [v, k] = [e.from, e.output];
  const over = e.boxes && e.over ? e.over : null;
  let cursor = -1, opened = null, dropped = 0, lastPic = null, lastBoxes = null;
  const poll = async () => {
    if (gen !== state.tapGen) return;
    try {
      const q = `cursor=${cursor}&max_side=640` + (over ? `&over=${encodeURIComponent(over)}` : "");
      const r = await getJSON(`/api/tap/${encodeURIComponent(v)}/${k}?${q}`);
      if (gen !== state.tapGen) return;
      if (opened === null) opened = r.next;
      cursor = r.next; dropped += r.dropped;
      for (const x of r.values) if (x.pictures.length) { lastPic = x.pictures[0]; lastBoxes = x.boxes; }
      if (r.over && r.over.pictures.length) { lastPic = r.over.pictures[0]; lastBoxes = r.over.boxes; }
      if (r.values.length) {
        pre.textContent = JSON.stringify(r.values[r.values.length - 1].value, null, 2);
        if (lastPic) { view.textContent = ""; view.appendChild(pictureElement(lastPic, lastBoxes)); }
      }
      info.textContent = `${cursor - opened} message(s) since the tap opened` + (dropped ? `, ${dropped} lost to it` : "") +
        (over ? ` · boxes drawn over ${over}` + (r.over && r.over.pictures.length && !r.over.matched ? " (its newest picture)" : "") : "");
    } catch (err) { info.textContent = "tap: " + err.message; }
    if (gen === state.tapGen) state.tapTimer = setTimeout(poll, 300);
  };
  poll();
}

async function main() {
  try { state.graph = await getJSON("/api/graph"); }
  catch (err) { document.getElementById("run-state").textContent = "cannot reach the broker: " + err.message; return; }
  document.getElementById("pipeline-name").textContent = "pipeline " + state.graph.pipeline;
  document.title = `${state.graph.pipeline} - pipelogic`;
  drawGraph(state.graph);
  try { applySnapshot(await getJSON("/api/state")); } catch (err) { /* the events will say */ }
  connect();
}
main();
