// The explorer page: a thin client of the project's JSON API. It computes no probability
// itself: every p, loss, gradient and region comes from the server's NumPy code; this file
// reads the controls, asks the API, and draws the answer.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PRESET = [["Cat", 2.5], ["Dog", 1.0], ["Rabbit", 0.5], ["Fox", -1.0], ["Owl", 0.0], ["Bee", -2.0]];
const CLASS_RGB = [[214, 69, 65], [47, 111, 178], [64, 160, 90]];
const PLANE_N = 80;
const START_THETA = [1, 0, 0, 0, 1, 0, -1, -1, 0];

const $ = (id) => document.getElementById(id);
const fmt = (v, digits = 4) => (v === 0 ? "0" : Number(v).toFixed(digits));
const logT = (input) => Math.pow(10, Number(input.value));

function status(message) {
  $("status").textContent = message || "";
}

// Each panel keeps only the answer to its latest request: a slow reply to an old slider
// position never overwrites a newer one.
const latest = {};
async function api(panel, path, body) {
  const ticket = (latest[panel] = (latest[panel] || 0) + 1);
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  let reply;
  try {
    const response = await fetch(path, init);
    reply = await response.json();
    if (!response.ok) throw new Error(reply.error || response.statusText);
  } catch (err) {
    if (ticket === latest[panel]) status(`${panel}: ${err.message}`);
    return null;
  }
  if (ticket !== latest[panel]) return null;
  status("");
  return reply;
}

// an SVG element (bars, plots)
function el(tag, attrs = {}, parent = null, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function html(tag, attrs = {}, parent = null, text = null) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function slider(parent, label, id, min, max, step, value, onInput) {
  const row = html("label", {}, parent, null);
  row.append(label);
  const input = html("input", { type: "range", id, min, max, step, value }, row);
  const out = html("output", { id: `${id}-out` }, row, String(value));
  input.addEventListener("input", () => { out.textContent = input.value; onInput(Number(input.value)); });
  return input;
}

function markFittedT(markId, inputId, temperature) {
  const mark = $(markId), input = $(inputId);
  const lo = Number(input.min), hi = Number(input.max);
  const share = (Math.log10(temperature) - lo) / (hi - lo);
  if (!(share >= 0 && share <= 1)) return;
  mark.style.left = `${170 + share * 320}px`;
  mark.textContent = `▲ fitted T = ${temperature.toPrecision(4)}`;
  mark.style.display = "block";
}

function drawBars(svg, names, p, highlight) {
  svg.replaceChildren();
  const rowH = 24, labelW = 58, barW = 190, height = names.length * rowH + 10;
  svg.setAttribute("viewBox", `0 0 320 ${height}`);
  svg.setAttribute("height", height);
  names.forEach((name, i) => {
    const y = 5 + i * rowH;
    el("text", { x: 0, y: y + rowH * 0.65 }, svg, name);
    el("rect", { x: labelW, y: y + 2, width: barW, height: rowH - 6, fill: "#eef1f5" }, svg);
    const cls = p[i] === 0 ? "bar zero" : i === highlight ? "bar top" : "bar";
    el("rect", { class: cls, x: labelW, y: y + 2, width: barW * p[i], height: rowH - 6 }, svg);
    el("text", { x: labelW + barW + 6, y: y + rowH * 0.65, class: "pval", "data-i": i }, svg, fmt(p[i], 3));
  });
}

// ---------------------------------------------------------------- 1. softmax playground
const pg = { k: 3, z: PRESET.map((c) => c[1]) };

function pgKind() { return document.querySelector('input[name="pg-kind"]:checked').value; }

function pgBuild() {
  const box = $("pg-logits");
  box.replaceChildren();
  for (let i = 0; i < pg.k; i++) {
    slider(box, PRESET[i][0], `pg-z${i}`, -5, 5, 0.1, pg.z[i], (v) => { pg.z[i] = v; pgUpdate(); });
  }
  const ySelect = $("pg-y"), keep = ySelect.value;
  ySelect.replaceChildren();
  html("option", { value: "" }, ySelect, "none");
  for (let i = 0; i < pg.k; i++) html("option", { value: i }, ySelect, PRESET[i][0]);
  if (keep !== "" && Number(keep) < pg.k) ySelect.value = keep;
}

async function pgUpdate() {
  const t = logT($("pg-t"));
  $("pg-t-out").textContent = t.toPrecision(3);
  const query = new URLSearchParams({ z: pg.z.slice(0, pg.k).join(","), t, kind: pgKind() });
  if ($("pg-y").value !== "") query.set("y", $("pg-y").value);
  const r = await api("softmax", `/api/softmax?${query}`);
  if (r) pgRender(r);
}

function pgRender(r) {
  const names = PRESET.slice(0, r.p.length).map((c) => c[0]);
  const top = r.p.indexOf(Math.max(...r.p));
  drawBars($("pg-bars"), names, r.p, top);
  const s = r.steps;
  const rows = [["z", r.z], ["z / T", s.scaled], ["z / T − max", s.shifted]];
  if (r.kind === "softmax") rows.push(["exp(·)", s.exp]);
  if (r.kind === "sparsemax") rows.push([`z / T − τ  (τ = ${fmt(s.tau)})`, s.scaled.map((v) => v - s.tau)]);
  rows.push(["p", r.p]);
  if (r.grad) rows.push(["p − y", r.grad]);
  const table = document.createElement("table");
  const head = html("tr", {}, table);
  html("th", {}, head, "");
  names.forEach((n) => html("th", {}, head, n));
  if (r.kind === "softmax") html("th", {}, head, "sum");
  for (const [label, values] of rows) {
    const tr = html("tr", {}, table);
    html("th", {}, tr, label);
    values.forEach((v, i) => {
      const cell = html("td", {}, tr, fmt(v));
      if (label === "p") cell.id = `pg-p${i}`;
      if (label === "p" && v === 0) cell.className = "zero";
    });
    if (r.kind === "softmax") html("td", {}, tr, label === "exp(·)" ? fmt(s.sum) : label === "p" ? "1" : "");
  }
  $("pg-table").replaceChildren(...table.childNodes);
  const zeros = r.p.filter((v) => v === 0).length;
  let loss = "";
  if (r.y !== undefined) {
    const value = r.loss === null ? "∞ (p_y is exactly 0)" : fmt(r.loss);
    loss = `cross-entropy −log p(${names[r.y]}) = ${value}. `;
  }
  if (r.kind === "sparsemax") loss += `${zeros} of ${r.p.length} classes get exactly zero.`;
  $("pg-loss").textContent = loss;
  $("pg-binary").textContent = r.sigmoid === undefined ? "" :
    `Two classes: sigmoid((z₁ − z₂) / T) = ${fmt(r.sigmoid, 6)}` +
    (r.kind === "softmax" ? `, and softmax gives p₁ = ${fmt(r.p[0], 6)}: the same number.` :
      ` (softmax's p₁; ${r.kind} gives ${fmt(r.p[0], 6)}).`);
}

function pgInit() {
  const kSelect = $("pg-k");
  for (let k = 2; k <= 6; k++) html("option", { value: k }, kSelect, String(k));
  kSelect.value = "3";
  kSelect.addEventListener("change", () => { pg.k = Number(kSelect.value); pgBuild(); pgUpdate(); });
  $("pg-t").addEventListener("input", pgUpdate);
  $("pg-y").addEventListener("change", pgUpdate);
  $("pg-kind").addEventListener("change", pgUpdate);
  pgBuild();
  pgUpdate();
}

// ---------------------------------------------------------------- 2a. sigmoid on one feature
async function sgUpdate() {
  const w = $("sg-w").value, b = $("sg-b").value;
  $("sg-w-out").textContent = w;
  $("sg-b-out").textContent = b;
  const r = await api("sigmoid", `/api/sigmoid?w=${w}&b=${b}`);
  if (!r) return;
  const svg = $("sg-plot"), X = (x) => 30 + x * 32, Y = (p) => 175 - p * 160;
  svg.replaceChildren();
  el("line", { x1: X(0), y1: Y(0), x2: X(10), y2: Y(0), stroke: "#999" }, svg);
  el("line", { x1: X(0), y1: Y(0.5), x2: X(10), y2: Y(0.5), stroke: "#bbb", "stroke-dasharray": "4 3" }, svg);
  el("text", { x: 4, y: Y(0.5) + 3 }, svg, "0.5");
  el("text", { x: 12, y: Y(1) + 3 }, svg, "1");
  el("text", { x: 12, y: Y(0) + 3 }, svg, "0");
  if (r.cut !== null && r.cut >= 0 && r.cut <= 10) {
    el("line", { x1: X(r.cut), y1: Y(0), x2: X(r.cut), y2: Y(1), stroke: "#333", "stroke-dasharray": "2 2" }, svg);
  }
  el("polyline", { points: r.x.map((x, i) => `${X(x)},${Y(r.p[i])}`).join(" "), fill: "none", stroke: "#1b4f86", "stroke-width": 2 }, svg);
  r.data.X.forEach((x, i) => {
    const c = CLASS_RGB[r.data.y[i]];
    el("circle", { cx: X(x[0]), cy: Y(r.data.y[i]), r: 4.5, fill: `rgb(${c})`, stroke: "#222" }, svg);
  });
  const cut = r.cut === null ? "none (w = 0)" : `x = ${fmt(r.cut, 2)}`;
  $("sg-info").textContent = `0.5 cut at ${cut}; log-loss on the 20 points ${fmt(r.loss)}`;
}

// ---------------------------------------------------------------- 2b. three classes on a plane
const rg = { theta: START_THETA.slice(), history: [] };

function rgKind() { return document.querySelector('input[name="rg-kind"]:checked').value; }

function rgBuild() {
  const box = $("rg-params");
  box.replaceChildren();
  ["class A", "class B", "class C"].forEach((name, c) => {
    html("div", { class: "group" }, box, name);
    ["w1", "w2", "b"].forEach((p, j) => {
      const i = 3 * c + j;
      slider(box, p, `rg-${i}`, -5, 5, 0.01, rg.theta[i].toFixed(2), (v) => { rg.theta[i] = v; rgUpdate(); });
    });
  });
}

function rgShowTheta() {
  rg.theta.forEach((v, i) => { $(`rg-${i}`).value = v; $(`rg-${i}-out`).textContent = v.toFixed(2); });
}

async function rgUpdate() {
  const t = logT($("rg-t"));
  $("rg-t-out").textContent = t.toPrecision(3);
  const query = new URLSearchParams({ theta: rg.theta.join(","), t, kind: rgKind(), n: PLANE_N });
  const r = await api("regions", `/api/regions?${query}`);
  if (r) rgRender(r);
}

function rgRender(r) {
  const canvas = $("rg-plane"), ctx = canvas.getContext("2d"), n = r.n;
  const img = new ImageData(n, n);
  const kind = rgKind();
  r.cls.forEach((c, i) => {
    // shade: white at the uniform 1/3, the class colour at certainty; with sparsemax a dark
    // edge wherever the set of classes at exactly zero changes (the zero regions' borders)
    const a = Math.max(0, (r.top[i] - 1 / 3) / (2 / 3)), rgb = CLASS_RGB[c];
    const x = i % n, right = x + 1 < n ? r.zeros[i + 1] : r.zeros[i], below = i + n < n * n ? r.zeros[i + n] : r.zeros[i];
    const edge = kind === "sparsemax" && (right !== r.zeros[i] || below !== r.zeros[i]);
    for (let j = 0; j < 3; j++) img.data[4 * i + j] = edge ? 40 : 255 - a * (255 - rgb[j]) * 0.8;
    img.data[4 * i + 3] = 255;
  });
  const off = new OffscreenCanvas(n, n);
  off.getContext("2d").putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
  const [lo, hi] = r.range, S = (v) => ((v - lo) / (hi - lo)) * canvas.width;
  r.data.X.forEach(([x1, x2], i) => {
    ctx.beginPath();
    ctx.arc(S(x1), canvas.height - S(x2), 4, 0, 2 * Math.PI);
    ctx.fillStyle = `rgb(${CLASS_RGB[r.data.y[i]]})`;
    ctx.fill();
    ctx.strokeStyle = "#111";
    ctx.stroke();
  });
  let info = `cross-entropy on the 75 points (T = 1): ${fmt(r.loss)}`;
  if (kind !== "softmax") {
    const share = r.zero_share.map((s, k) => `${"ABC"[k]} ${Math.round(100 * s)}%`).join(", ");
    info += `. Exactly zero probability on ${share} of the plane` +
      (kind === "sparsemax" ? " (dark lines: where a class enters or leaves the support)." : ".");
  }
  $("rg-info").textContent = info;
}

async function rgStep() {
  const lr = Number($("rg-lr").value);
  const r = await api("step", "/api/regions/step", { theta: rg.theta, lr });
  if (!r) return;
  rg.theta = r.theta;
  rg.history.push(r.loss_after);
  if (rg.history.length === 1) rg.history.unshift(r.loss_before);
  $("rg-history").textContent = `loss after each step: ${rg.history.map((v) => fmt(v, 3)).join(" → ")}`;
  rgShowTheta();
  rgUpdate();
}

function rgInit() {
  rgBuild();
  $("rg-t").addEventListener("input", rgUpdate);
  $("rg-kind").addEventListener("change", rgUpdate);
  $("rg-step").addEventListener("click", rgStep);
  $("rg-reset").addEventListener("click", () => {
    rg.theta = START_THETA.slice();
    rg.history = [];
    $("rg-history").textContent = "";
    rgShowTheta();
    rgUpdate();
  });
  rgUpdate();
}

// ---------------------------------------------------------------- 3. a digit
const dg = { names: [], pixels: null, truth: null, next: { test: 0, mistakes: 0 }, drawing: false };

function paint28(canvas, values, diverging) {
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(28, 28);
  const limit = diverging ? Math.max(1e-12, ...values.map(Math.abs)) : 255;
  values.forEach((v, i) => {
    let rgb;
    if (!diverging) rgb = [v, v, v];
    else {
      const s = Math.min(1, Math.abs(v) / limit);
      rgb = v >= 0 ? [255, 255 * (1 - s), 255 * (1 - s)] : [255 * (1 - s), 255 * (1 - s), 255];
    }
    img.data.set([...rgb, 255], 4 * i);
  });
  ctx.putImageData(img, 0, 0);
}

async function dgPredict(payload) {
  const t = logT($("dg-t"));
  $("dg-t-out").textContent = t.toPrecision(3);
  const alpha = Number($("dg-alpha").value);
  $("dg-alpha-out").textContent = alpha.toFixed(2);
  const r = await api("predict", "/api/predict", { ...payload, t, alpha });
  if (!r) return;
  dgShowSet(r);
  dg.pixels = r.pixels;
  drawBars($("dg-bars"), dg.names, r.p, r.index);
  paint28($("dg-input"), r.seen || r.pixels, false);  // deskewed, if the model deskews
  paint28($("dg-template"), r.template, true);
  paint28($("dg-contrib"), r.contribution, true);
  $("dg-template-cap").textContent = `template W[:, ${r.label}]`;
  const truth = dg.truth === null ? "" : ` (true class: ${dg.truth})`;
  $("dg-info").textContent = `predicted ${r.label} with p = ${fmt(r.p[r.index], 4)} at T = ${r.t.toPrecision(3)}${truth}; ` +
    `logit ${fmt(r.logits[r.index], 3)} = sum of the contributions + bias ${fmt(r.bias, 3)}`;
}

// the set as chips, one per class name (names may hold any text: never joined by commas)
function dgShowSet(r) {
  const line = $("dg-set");
  line.replaceChildren();
  if (r.set === null) { line.textContent = "this model has no prediction sets (no conformal file)"; return; }
  line.append(`at ${(100 * (1 - r.alpha)).toFixed(0)}% (α = ${r.alpha.toFixed(2)}): `);
  if (r.set.length === 0) html("span", { class: "empty" }, line, "empty set: no class is likely enough");
  for (const name of r.set) html("span", { class: "chip" }, line, name);
  line.append(` (${r.set.length} ${r.set.length === 1 ? "class" : "classes"})`);
}

function dgClear() {
  const ctx = $("dg-canvas").getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, 280, 280);
  dg.pixels = null;
}

async function dgExample(set) {
  const r = await api("examples", `/api/examples?set=${set}`);
  if (!r) return;
  if (r.items.length === 0) { status("no example images: run `make run` to prepare the test split"); return; }
  const item = r.items[dg.next[set]++ % r.items.length];
  dgClear();
  dg.truth = item.label;
  dgPredict({ pixels: item.pixels });
}

function dgInitCanvas() {
  const canvas = $("dg-canvas"), ctx = canvas.getContext("2d");
  dgClear();
  const at = (e) => { const b = canvas.getBoundingClientRect(); return [(e.clientX - b.left) * 280 / b.width, (e.clientY - b.top) * 280 / b.height]; };
  canvas.addEventListener("pointerdown", (e) => {
    if (dg.pixels !== null && dg.truth !== null) dgClear();
    dg.truth = null;
    dg.drawing = true;
    canvas.setPointerCapture(e.pointerId);
    ctx.lineWidth = 20; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.strokeStyle = "#000";
    ctx.beginPath();
    ctx.moveTo(...at(e));
    ctx.lineTo(...at(e));
    ctx.stroke();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!dg.drawing) return;
    ctx.lineTo(...at(e));
    ctx.stroke();
  });
  const end = () => {
    if (!dg.drawing) return;
    dg.drawing = false;
    dgPredict({ image: canvas.toDataURL("image/png") });
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
}

async function dgInit(model) {
  dg.names = model.class_names;
  dgInitCanvas();
  $("dg-clear").addEventListener("click", () => { dgClear(); dg.truth = null; });
  $("dg-test").addEventListener("click", () => dgExample("test"));
  $("dg-mistake").addEventListener("click", () => dgExample("mistakes"));
  $("dg-t").addEventListener("input", () => { if (dg.pixels) dgPredict({ pixels: dg.pixels }); });
  $("dg-alpha").addEventListener("input", () => { if (dg.pixels) dgPredict({ pixels: dg.pixels }); });
  if (model.conformal) $("dg-alpha").value = model.conformal.alpha;
  if (model.examples.test > 0) dgExample("test");
}

// ---------------------------------------------------------------- start
async function start() {
  pgInit();
  $("sg-w").addEventListener("input", sgUpdate);
  $("sg-b").addEventListener("input", sgUpdate);
  sgUpdate();
  rgInit();
  const model = await api("model", "/api/model");
  if (!model) return;
  $("model-line").textContent = `Model: ${model.source}, fitted temperature T = ${model.temperature.toPrecision(4)}`;
  const fittedLog = Math.log10(model.temperature).toFixed(3);
  $("dg-t").value = fittedLog;  // the digit panel starts at the calibrated probabilities
  $("dg-t-out").textContent = model.temperature.toPrecision(3);
  markFittedT("pg-t-mark", "pg-t", model.temperature);
  markFittedT("dg-t-mark", "dg-t", model.temperature);
  dgInit(model);
}

document.addEventListener("DOMContentLoaded", start);
