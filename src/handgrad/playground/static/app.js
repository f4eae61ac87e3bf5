// The playground page: sends the controls' settings to the server over one WebSocket and draws the frames.
// No framework, no build step. Protocol and hooks: docs/playground.md.
"use strict";

const token = document.body.dataset.token;
const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
const SVG = "http://www.w3.org/2000/svg";
const MAX_UPLOAD = 1 << 20;
const state = { hidden: [], network: null, frame: null, features: [], presets: {}, dims: 2, task: "binary",
                request: 0, optimizerRates: {}, rateChosen: false, rateUndo: null,
                points: { train: [], test: [] }, box: [0, 0, 1, 1], lines: [], units: [], dots: [],
                hover: null, hoverDetail: null };
let socket = null;

function connect() {
  socket = new WebSocket(`ws://${location.host}/ws?token=${encodeURIComponent(token)}`);
  socket.onmessage = (event) => receive(JSON.parse(event.data));
  socket.onclose = () => { setText("state", "disconnected"); showMessage("The connection to the playground server closed; reload the page to start again."); };
  socket.onopen = () => setText("state", "paused");
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

// An exact number from the server to 5 significant digits; a diverged run's inf or NaN arrives as null (JSON has
// neither), shown as such instead of breaking the page.
function exact(v) {
  return typeof v === "number" ? v.toPrecision(5) : "not finite (inf or NaN)";
}

function setText(name, text) {
  for (const element of $$(`[data-value="${name}"]`)) element.textContent = text;
}

function showMessage(text) {
  const box = $('[data-panel="message"]');
  box.textContent = text;
  box.hidden = !text;
}

// ------------------------------------------------------------------ messages from the server
function receive(message) {
  if (message.type === "hello") return hello(message);
  if (message.type === "network") return network(message);
  if (message.type === "frame") return frame(message);
  if (message.type === "hover") return hoverArrived(message);
  if (message.type === "error") {  // an error that stopped the run says so ("playing": false)
    if (message.playing === false) setText("state", "paused");
    return showMessage(message.message);
  }
  if (message.type === "file") return saveFile(message);
}

function hello(message) {
  state.presets = message.presets;
  state.maxHidden = message.max_hidden_layers;
  state.optimizerRates = message.optimizer_rates;
  state.rateWarningFactor = message.rate_warning_factor;
  const data = $('[data-field="data"]');
  data.innerHTML = "";
  for (const name of [...message.data_sets, "csv"]) data.add(new Option(name === "csv" ? "your CSV" : name, name));
  const features = $('[data-field="features"]');
  features.innerHTML = "";
  for (const name of message.features) {
    const label = document.createElement("label");
    label.innerHTML = `<input type="checkbox" value="${name}"> ${name}`;
    features.append(label);
  }
  const presets = $('[data-field="preset"]');
  for (const [name, preset] of Object.entries(message.presets)) presets.add(new Option(preset.title, name));
}

function network(message) {
  // The form is the page's own: a reply to this page's latest settings changes only what the server
  // decided (features a 1-D set lacks); a stale reply changes nothing in it; a network the server
  // chose (reset, a CSV, a model file) fills the whole form.
  if (message.request != null && message.request !== state.request) return;
  showMessage("");
  state.network = message.network;
  state.features = message.features;
  state.dims = message.dims;
  state.task = message.task;
  state.optimizer = message.config.optimizer;
  state.points = message.points;
  state.box = message.box;
  const standardized = $('[data-value="standardized"]');  // a loaded file's standardization of the inputs
  standardized.textContent = message.standardized || "";
  standardized.hidden = !message.standardized;
  if (message.request == null) fillForm(message.config);
  else fillFeatures(message.features);
  if (state.hover) leaveConnection();  // its line is drawn anew
  buildDiagram();
  const box = $('[data-value="equations"]');
  box.innerHTML = message.equations.map((section) =>
    `<h3>${section.title}</h3><table><tr><th>equation</th><th>shape</th><th>where</th></tr>` +
    section.rows.map((row) => `<tr><td>${row.lhs} = ${row.rhs}</td><td>${escapeHtml(row.shape)}</td><td>${escapeHtml(row.detail)}</td></tr>`).join("") +
    "</table>" + section.notes.map((note) => `<p class="hint">note: ${escapeHtml(note)}</p>`).join("")).join("");
  $('[data-panel="weight"]').hidden = true;
  $('[data-panel="neuron"]').hidden = true;
}

function escapeHtml(text) {
  const div = document.createElement("div");
  div.textContent = text;
  return div.innerHTML;
}

function fillForm(config) {
  const data = config.data || {};
  $('[data-field="data"]').value = data.name || "xor";
  $('[data-field="n_samples"]').value = data.n_samples ?? 200;
  $('[data-field="noise"]').value = data.noise ?? 0.1;
  $('[data-field="test_fraction"]').value = data.test_fraction ?? 0.5;
  $('[data-field="data_seed"]').value = data.seed ?? 0;
  fillFeatures(config.features || [], data.name === "regression1d" ? 1 : state.dims);  // (a preset's before its reply)
  for (const name of ["optimizer", "learning_rate", "schedule", "batch_size", "l1", "l2", "seed", "output", "loss",
                      "output_slope", "output_alpha", "dtype", "init"]) {
    if (config[name] !== undefined) $(`[data-field="${name}"]`).value = config[name];
  }
  showOutputParameters();
  rateWarning();
  const allBias = config.bias !== false;  // the one checkbox of earlier versions: the default of every layer
  $('[data-field="output_bias"]').checked = config.output_bias ?? allBias;
  state.hidden = (config.hidden || []).map((layer) => newLayer({ bias: allBias && !(layer.norm && layer.norm !== "none"), ...layer }));
  drawLayerEditor();
}

// A 1-D data set has x1 only: the boxes of the x2 features are disabled and keep the user's choice, so that
// going back to a 2-D set brings them back (before, xor after the regression trained on x1 alone).
function fillFeatures(names, dims = state.dims) {
  for (const box of $$('[data-field="features"] input')) {
    box.disabled = dims === 1 && box.value.includes("x2");
    box.title = box.disabled ? "this data set has x1 only" : "";
    if (!box.disabled) box.checked = names.includes(box.value);
  }
}

function newLayer(settings = {}) {
  return { size: 4, activation: "tanh", slope: 0.01, alpha: 1, dropout: 0, bias: true, norm: "none", ...settings };
}

const BETA_REPLACES_BIAS = "A layer with a norm has no bias: the norm's \u03b2 (beta) replaces it.";

function drawLayerEditor() {
  const box = $('[data-panel="layers"]');
  box.innerHTML = "";
  state.hidden.forEach((layer, index) => {
    const row = document.createElement("div");
    row.className = "layer";
    row.dataset.layer = String(index + 1);
    const normed = layer.norm !== "none";
    const biasTip = normed ? BETA_REPLACES_BIAS : "this layer's bias b (Z = A W + b)";
    row.innerHTML = `<span>layer ${index + 1}</span>
      <label>size <input data-field="size" type="number" min="1" max="64" value="${layer.size}"></label>
      <select data-field="activation">${["relu", "leaky_relu", "tanh", "sigmoid", "elu", "gelu", "silu", "softplus", "identity", "softmax", "exp"]
        .map((name) => `<option${name === layer.activation ? " selected" : ""}>${name}</option>`).join("")}</select>
      <label>slope <input data-field="slope" type="number" min="0" max="1" step="0.01" value="${layer.slope}"></label>
      <label>alpha <input data-field="alpha" type="number" min="0.000001" max="100" step="0.1" value="${layer.alpha}"></label>
      <label>dropout <input data-field="dropout" type="number" min="0" max="0.9" step="0.1" value="${layer.dropout}"></label>
      <label title="${biasTip}"><input data-field="bias" type="checkbox"${layer.bias && !normed ? " checked" : ""}${normed ? " disabled" : ""} title="${biasTip}"> bias</label>
      <label title="normalize Z before the activation: batch (over the batch's rows) or layer (over the units)">norm
        <select data-field="norm">${["none", "batch", "layer"].map((name) => `<option${name === layer.norm ? " selected" : ""}>${name}</option>`).join("")}</select></label>
      <button data-action="remove-layer" title="remove this layer">&#x2715;</button>`;
    const slope = row.querySelector('[data-field="slope"]').parentElement;
    const alpha = row.querySelector('[data-field="alpha"]').parentElement;
    slope.hidden = layer.activation !== "leaky_relu";
    alpha.hidden = layer.activation !== "elu";
    for (const input of $$("input, select", row)) {
      input.addEventListener("change", () => {
        const field = input.dataset.field;
        layer[field] = input.type === "number" ? Number(input.value) : input.type === "checkbox" ? input.checked : input.value;
        slope.hidden = layer.activation !== "leaky_relu";
        alpha.hidden = layer.activation !== "elu";
        if (field === "norm") {  // a norm switches the bias off (beta replaces it); no norm gives it back
          layer.bias = layer.norm === "none";
          drawLayerEditor();
        }
        configure();
      });
    }
    row.querySelector('[data-action="remove-layer"]').addEventListener("click", () => {
      state.hidden.splice(index, 1);
      drawLayerEditor();
      configure();
    });
    box.append(row);
  });
}

function readConfig() {
  const value = (name) => $(`[data-field="${name}"]`).value;
  const number = (name) => Number(value(name));
  return {
    data: { name: value("data"), n_samples: number("n_samples"), noise: number("noise"),
            test_fraction: number("test_fraction"), seed: number("data_seed") },
    features: $$('[data-field="features"] input').filter((box) => box.checked).map((box) => box.value),
    hidden: state.hidden, output: value("output"), output_bias: $('[data-field="output_bias"]').checked, loss: value("loss"),
    output_slope: number("output_slope"), output_alpha: number("output_alpha"),
    optimizer: value("optimizer"), learning_rate: number("learning_rate"), schedule: value("schedule"),
    batch_size: number("batch_size"), l1: number("l1"), l2: number("l2"), seed: number("seed"),
    dtype: value("dtype"), init: value("init"),
  };
}

function configure(config = readConfig()) {
  state.request += 1;
  send({ type: "configure", id: state.request, config });
}

function showOutputParameters() {  // the output activation's slope (leaky ReLU) or alpha (ELU)
  const output = $('[data-field="output"]').value;
  $('[data-field="output_slope"]').parentElement.hidden = output !== "leaky_relu";
  $('[data-field="output_alpha"]').parentElement.hidden = output !== "elu";
}

// ------------------------------------------------------------------ the learning rate follows the optimizer
// Picking an optimizer moves the learning rate to that optimizer's (hello's optimizer_rates), with a line that
// says so and an undo button, unless the rate is one the user typed (or kept with undo): that one stays, and
// when it is far above the optimizer's (RATE_WARNING_FACTOR times or more) a line says so, with a button that
// takes the optimizer's rate.
function rateHint(text, button) {
  const hint = $('[data-panel="rate-hint"]');
  hint.hidden = !text;
  setText("rate-hint", text || "");
  $('[data-action="undo-rate"]').hidden = button !== "undo";
  $('[data-action="use-rate"]').hidden = button !== "use";
}

function optimizerRate() {
  const optimizer = $('[data-field="optimizer"]').value;
  return [optimizer, state.optimizerRates[optimizer]];
}

function rateWarning() {
  const [optimizer, usual] = optimizerRate();
  const rate = Number($('[data-field="learning_rate"]').value);
  if (usual === undefined || !(rate >= state.rateWarningFactor * usual)) return rateHint("");
  $('[data-action="use-rate"]').textContent = `use ${usual}`;
  rateHint(`The learning rate ${rate} is far above ${optimizer}'s usual rate here (${usual}): training will likely ` +
           "stall or diverge.", "use");
}

function optimizerChanged() {
  const [optimizer, usual] = optimizerRate();
  const field = $('[data-field="learning_rate"]');
  if (!state.rateChosen && usual !== undefined && Number(field.value) !== usual) {
    state.rateUndo = field.value;
    field.value = usual;
    rateHint(`The learning rate moved from ${state.rateUndo} to ${usual}, ${optimizer}'s usual rate here.`, "undo");
  } else {
    rateWarning();
  }
  configure();
}

function undoRate() {  // the rate from before the optimizer moved it, now the user's own
  $('[data-field="learning_rate"]').value = state.rateUndo;
  state.rateChosen = true;
  rateWarning();
  configure();
}

function useOptimizerRate() {
  $('[data-field="learning_rate"]').value = optimizerRate()[1];
  state.rateChosen = false;
  rateHint("");
  configure();
}

// ------------------------------------------------------------------ a frame
function frame(message) {
  try {
    drawFrame(message);
  } finally {  // the server sends the next play frame only when this one is drawn (or failed to draw)
    if (message.playing) send({ type: "drawn" });
  }
}

function drawFrame(message) {
  state.frame = message;
  setText("state", message.playing ? "playing" : "paused");
  setText("epoch", String(message.epoch));
  setText("loss", message.loss);
  setText("test-loss", message.test_loss ?? "-");
  setText("learning-rate", message.learning_rate);
  setText("batch", `${message.batch.index + 1} of ${message.batch.of}`);
  if (message.hover && state.hover === `${message.hover.layer},${message.hover.i},${message.hover.j}`) {
    state.hoverDetail = message.hover;
  }
  updateDiagram(message);
  if (state.hover) hoverText();
  drawOutput(message);
  drawLoss(message.history);
  if (message.weight) showWeight(message.weight);
  if (message.neuron) showNeuron(message.neuron);
}

// ------------------------------------------------------------------ the network diagram
const GAP_X = 110, TOP = 34, LEFT = 50, TALL = 440;
const DENSE = 2000;  // connections above which the diagram trades anti-aliasing for speed
let NODE = 30, GAP_Y = 42;  // shrink for wide layers, so the diagram stays about TALL pixels high

function nodePosition(column, unit, count, tallest) {
  const offset = ((tallest - count) * GAP_Y) / 2;
  return { x: LEFT + column * GAP_X, y: TOP + offset + unit * GAP_Y };
}

function buildDiagram() {
  const svg = $('[data-panel="diagram"]');
  svg.innerHTML = "";
  state.lines = [];  // every connection, unit picture and bias dot with what it shows: a frame updates them
  state.units = [];  // without looking them up again (thousands in a big network)
  state.dots = [];
  const sizes = state.network.sizes;
  const tallest = Math.max(...sizes);
  GAP_Y = Math.max(10, Math.min(42, TALL / tallest));
  NODE = Math.max(7, Math.min(30, GAP_Y - 6));
  let connections = 0;
  for (let k = 1; k < sizes.length; k++) connections += sizes[k - 1] * sizes[k];
  svg.classList.toggle("dense", connections > DENSE);  // thousands of lines: drawn without anti-aliasing (faster)
  const width = LEFT + (sizes.length - 1) * GAP_X + NODE + 40, height = TOP + tallest * GAP_Y + 10;
  svg.setAttribute("width", width);  // the drawing's own size; a diagram wider than its column is scaled down
  svg.setAttribute("height", height);  // to fit it (style.css: max-width 100%), and the viewBox keeps its
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);  // coordinates, so a click still hits the same line
  const hits = document.createElementNS(SVG, "g");  // a wide, invisible band under each line: a thin one is clickable too
  const lines = document.createElementNS(SVG, "g");
  const nodes = document.createElementNS(SVG, "g");
  svg.append(hits, lines, nodes);
  for (let k = 1; k < sizes.length; k++) {
    for (let i = 0; i < sizes[k - 1]; i++) {
      for (let j = 0; j < sizes[k]; j++) {
        const from = nodePosition(k - 1, i, sizes[k - 1], tallest), to = nodePosition(k, j, sizes[k], tallest);
        const line = document.createElementNS(SVG, "line");
        line.setAttribute("x1", from.x + NODE); line.setAttribute("y1", from.y + NODE / 2);
        line.setAttribute("x2", to.x); line.setAttribute("y2", to.y + NODE / 2);
        line.dataset.weight = `${k},${i},${j}`;
        const hit = document.createElementNS(SVG, "path");
        hit.setAttribute("d", `M${from.x + NODE},${from.y + NODE / 2}L${to.x},${to.y + NODE / 2}`);
        hit.setAttribute("class", "hit");
        for (const element of [line, hit]) {
          element.addEventListener("click", () => send({ type: "select_weight", layer: k, i, j }));
          element.addEventListener("mouseenter", (event) => enterConnection(line.dataset.weight, event));
          element.addEventListener("mousemove", showHover);
          element.addEventListener("mouseleave", leaveConnection);
        }
        state.lines.push({ line, k, i, j, stroke: null, width: null });
        lines.append(line);
        hits.append(hit);
      }
    }
  }
  sizes.forEach((size, column) => {
    for (let unit = 0; unit < size; unit++) {
      const at = nodePosition(column, unit, size, tallest);
      const group = document.createElementNS(SVG, "g");
      const image = document.createElementNS(SVG, "image");
      image.setAttribute("x", at.x); image.setAttribute("y", at.y);
      image.setAttribute("width", NODE); image.setAttribute("height", NODE);
      const box = document.createElementNS(SVG, "rect");
      box.setAttribute("x", at.x); box.setAttribute("y", at.y);
      box.setAttribute("width", NODE); box.setAttribute("height", NODE);
      box.setAttribute("class", "node");
      group.append(image, box);
      if (column > 0) state.units.push({ image, k: column, j: unit, codes: null });
      if (column === 0) {
        const label = document.createElementNS(SVG, "text");
        label.setAttribute("x", at.x - 4); label.setAttribute("y", at.y + NODE / 2 + 4);
        label.setAttribute("text-anchor", "end");
        label.textContent = state.features[unit];
        group.append(label);
      } else {
        group.dataset.neuron = `${column},${unit}`;
        group.addEventListener("click", () => send({ type: "select_neuron", layer: column, unit }));
        if (state.network.biases[column - 1]) {  // the unit's bias b_k[j]: a dot, coloured and sized by its value
          const dot = document.createElementNS(SVG, "circle");
          dot.setAttribute("cx", at.x + NODE - 4); dot.setAttribute("cy", at.y + 4); dot.setAttribute("r", 3);
          dot.setAttribute("class", "bias");
          dot.dataset.bias = `${column},${unit}`;
          dot.append(document.createElementNS(SVG, "title"));
          group.append(dot);
          state.dots.push({ dot, k: column, j: unit });
        }
      }
      nodes.append(group);
    }
  });
  sizes.slice(1).forEach((size, index) => {
    const at = nodePosition(index + 1, 0, size, tallest);
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", at.x + NODE / 2); label.setAttribute("y", TOP - 19);
    label.setAttribute("text-anchor", "middle"); label.setAttribute("class", "layer-label");
    label.textContent = state.network.activations[index];
    const norm = state.network.norms[index];
    const kind = document.createElementNS(SVG, "text");  // what takes the bias's place: + b, a norm, or nothing
    kind.setAttribute("x", at.x + NODE / 2); kind.setAttribute("y", TOP - 7);
    kind.setAttribute("text-anchor", "middle"); kind.setAttribute("class", "layer-kind");
    kind.dataset.layerKind = String(index + 1);
    kind.textContent = norm ? `${norm} norm (\u03b3, \u03b2)` : state.network.biases[index] ? "+ b" : "no bias";
    svg.append(label, kind);
  });
}

// int8 codes from base64 (session._codes): code / 127 * scale is the value, to within scale / 127.
function decodeCodes(text) {
  const raw = atob(text), codes = new Int8Array(raw.length);
  for (let n = 0; n < raw.length; n++) codes[n] = raw.charCodeAt(n);  // 128..255 wrap to -128..-1
  return codes;
}

function updateDiagram(message) {
  // The connections: colour by sign, thickness by |W| next to the largest |W| of the network. A frame brings
  // the weights as codes for this (the exact numbers come with the hover box and the panels).
  const layers = message.weights.map((W) => ({ codes: decodeCodes(W.codes), columns: W.shape[1], scale: W.scale }));
  const largest = Math.max(1e-12, ...layers.map((W) => W.scale));
  for (const entry of state.lines) {
    const W = layers[entry.k - 1];
    const code = W?.codes[entry.i * W.columns + entry.j];
    if (code === undefined) continue;
    const w = (code / 127) * W.scale;
    const stroke = w >= 0 ? "#1f6fb4" : "#e8710a", width = (0.6 + 3.4 * Math.abs(w) / largest).toFixed(1);
    if (stroke !== entry.stroke) entry.line.setAttribute("stroke", entry.stroke = stroke);  // only what changed:
    if (width !== entry.width) entry.line.setAttribute("stroke-width", entry.width = width);  // fewer to repaint
  }
  let largestBias = 1e-12;
  for (const b of message.biases) for (const v of b || []) largestBias = Math.max(largestBias, Math.abs(v));
  for (const { dot, k, j } of state.dots) {
    const b = message.biases[k - 1]?.[j];
    if (b === undefined) continue;
    dot.setAttribute("fill", b >= 0 ? "#1f6fb4" : "#e8710a");
    dot.setAttribute("r", (1.5 + 2.5 * Math.abs(b) / largestBias).toFixed(2));
    dot.firstChild.textContent = `b${k}[${j}] = ${exact(b)}`;
  }
  const grid = message.neuron_grid, cells = state.dims === 1 ? 4 * grid : grid * grid;
  const pictures = message.neurons.map(decodeCodes);
  for (const unit of state.units) {
    const codes = pictures[unit.k - 1]?.subarray(unit.j * cells, (unit.j + 1) * cells);
    if (!codes || codes.length < cells || sameCodes(codes, unit.codes)) continue;  // unchanged: no new picture
    unit.codes = codes;
    unit.image.setAttribute("href", heatImage(codes, grid, state.dims === 1));
  }
}

function sameCodes(a, b) {
  if (!b || a.length !== b.length) return false;
  for (let n = 0; n < a.length; n++) if (a[n] !== b[n]) return false;
  return true;
}

// The hover box of a connection: its exact weight and gradient come from the server (a "hover" message at
// once, then with every frame while the pointer rests on it, so they change before your eyes), with the
// term it contributes written out.
function enterConnection(name, event) {
  state.hover = name;
  state.hoverDetail = null;
  const [layer, i, j] = name.split(",").map(Number);
  send({ type: "hover", layer, i, j });
  showHover(event);
}

function leaveConnection() {
  state.hover = null;
  state.hoverDetail = null;
  send({ type: "hover" });
  $('[data-panel="hover"]').hidden = true;
}

function hoverArrived(detail) {
  if (state.hover !== `${detail.layer},${detail.i},${detail.j}`) return;  // the pointer has moved on
  state.hoverDetail = detail;
  hoverText();
}

function showHover(event) {
  const box = $('[data-panel="hover"]');
  box.style.left = `${event.pageX + 14}px`;
  box.style.top = `${event.pageY + 10}px`;
  hoverText();
}

function nextStep(grad) {
  const rate = Number(state.frame.learning_rate);
  if (state.optimizer !== "sgd") return `${state.optimizer} steps from this gradient and its own running state.`;
  if (state.network.dropout.some((r) => r > 0)) return "The next step draws dropout masks, which change this gradient.";
  if (typeof grad !== "number") return "The next SGD step adds -lr \u00d7 the gradient to it.";
  return `The next SGD step adds -${rate} \u00d7 ${exact(grad)} = ${exact(-rate * grad)} to it.`;
}

function hoverText() {
  const box = $('[data-panel="hover"]'), detail = state.hoverDetail;
  if (!state.hover || !detail || !state.frame) return;
  const { layer: k, i, j, value: w, grad } = detail;
  const below = k === 1 ? `X[n,${i}] (${state.features[i]})` : `A${k - 1}[n,${i}]`;
  box.textContent = `W${k}[${i},${j}] = ${exact(w)}\n` +
    `dJ/dW${k}[${i},${j}] = ${exact(grad)} on the current batch\n` +
    `It adds ${below} \u00d7 ${exact(w)} to Z${k}[n,${j}]` +
    (state.network.norms[k - 1] ? `, which layer ${k}'s ${state.network.norms[k - 1]} norm then standardizes.\n` : ".\n") +
    nextStep(grad);
  box.hidden = false;
}

// ------------------------------------------------------------------ pictures
const ORANGE = [232, 113, 10], BLUE = [31, 111, 180], WHITE = [250, 250, 250];
const CLASS_COLOURS = [[232, 113, 10], [31, 111, 180], [44, 160, 44], [148, 103, 189], [214, 39, 40], [140, 86, 75]];

function mix(a, b, t) {
  return a.map((v, n) => Math.round(v + (b[n] - v) * t));
}

function diverging(t) {  // t in [-1, 1]: orange, white, blue
  return t < 0 ? mix(WHITE, ORANGE, Math.min(-t, 1)) : mix(WHITE, BLUE, Math.min(t, 1));
}

const heatCanvas = document.createElement("canvas");  // one canvas draws every unit's picture in turn

function heatImage(values, grid, oneDimensional) {
  const canvas = heatCanvas;
  let largest = 1e-12;
  for (const v of values) largest = Math.max(largest, Math.abs(v));
  if (oneDimensional) {  // a unit of a 1-D input: its curve
    canvas.width = canvas.height = 32;
    const g = canvas.getContext("2d");
    g.fillStyle = "#fff"; g.fillRect(0, 0, 32, 32);
    g.strokeStyle = "#1f6fb4"; g.beginPath();
    values.forEach((v, n) => { const x = (n / (values.length - 1)) * 32, y = 16 - (v / largest) * 14; n ? g.lineTo(x, y) : g.moveTo(x, y); });
    g.stroke();
    return canvas.toDataURL();
  }
  canvas.width = canvas.height = grid;
  const g = canvas.getContext("2d");
  const image = g.createImageData(grid, grid);
  values.forEach((v, n) => { image.data.set([...diverging(v / largest), 255], 4 * n); });
  g.putImageData(image, 0, 0);
  return canvas.toDataURL();
}

function toPixel(box, x1, x2, width, height) {
  return [((x1 - box[0]) / (box[2] - box[0])) * width, height - ((x2 - box[1]) / (box[3] - box[1])) * height];
}

function drawOutput(message) {
  const canvas = $('[data-panel="output"]');
  const g = canvas.getContext("2d");
  const { width, height } = canvas;
  g.clearRect(0, 0, width, height);
  const points = state.points, all = points.train.concat(points.test);
  if (state.dims === 1) return drawCurve(g, width, height, message, all);
  const grid = message.grid, out = message.output;
  const image = g.createImageData(grid, grid);
  const targets = all.map((p) => p[2]);
  const low = Math.min(...targets), high = Math.max(...targets);
  for (let n = 0; n < grid * grid; n++) {
    let colour;
    if (out.kind === "class") colour = mix(WHITE, CLASS_COLOURS[out.class[n] % 6], 0.2 + 0.6 * out.value[n]);
    else if (out.kind === "probability") colour = diverging(2 * out.value[n] - 1);
    else colour = diverging(high > low ? (2 * (out.value[n] - low)) / (high - low) - 1 : 0);
    image.data.set([...colour, 255], 4 * n);
  }
  const small = document.createElement("canvas");
  small.width = small.height = grid;
  small.getContext("2d").putImageData(image, 0, 0);
  g.imageSmoothingEnabled = true;
  g.drawImage(small, 0, 0, width, height);
  const bounds = state.box;
  for (const [set, stroke] of [[points.train, "#fff"], [points.test, "#000"]]) {
    for (const [x1, x2, y] of set) {
      const [px, py] = toPixel(bounds, x1, x2, width, height);
      g.beginPath(); g.arc(px, py, 3.2, 0, 2 * Math.PI);
      const t = message.output.kind === "value" ? (high > low ? (2 * (y - low)) / (high - low) - 1 : 0) : null;
      g.fillStyle = `rgb(${(t === null ? (state.task === "binary" ? (y > 0.5 ? BLUE : ORANGE) : CLASS_COLOURS[y % 6]) : diverging(t)).join(",")})`;
      g.fill(); g.strokeStyle = stroke; g.lineWidth = 1; g.stroke();
    }
  }
}

function drawCurve(g, width, height, message, points) {
  const values = message.output.value;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]).concat(values);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const padX = 0.1 * Math.max(x1 - x0, 1e-9), padY = 0.1 * Math.max(y1 - y0, 1e-9);
  const px = (x) => ((x - x0 + padX) / (x1 - x0 + 2 * padX)) * width;
  const py = (y) => height - ((y - y0 + padY) / (y1 - y0 + 2 * padY)) * height;
  g.fillStyle = "#fafafa"; g.fillRect(0, 0, width, height);
  for (const [set, colour] of [[state.points.train, "#1f6fb4"], [state.points.test, "#999"]]) {
    g.fillStyle = colour;
    for (const [x, y] of set) { g.beginPath(); g.arc(px(x), py(y), 2.5, 0, 2 * Math.PI); g.fill(); }
  }
  g.strokeStyle = "#e8710a"; g.lineWidth = 2; g.beginPath();
  values.forEach((v, n) => {
    const x = x0 - padX + ((x1 - x0 + 2 * padX) * n) / (values.length - 1);
    n ? g.lineTo(px(x), py(v)) : g.moveTo(px(x), py(v));
  });
  g.stroke();
}

function drawLoss(history) {
  const canvas = $('[data-panel="loss-curve"]');
  const g = canvas.getContext("2d");
  const { width, height } = canvas;
  g.clearRect(0, 0, width, height);
  const values = history.loss.concat(history.test_loss.filter((v) => v !== null)).filter(Number.isFinite);
  if (!values.length) return;
  const high = Math.max(...values), low = Math.min(0, ...values), last = Math.max(history.x.at(-1), 1e-9);
  for (const [series, colour] of [[history.loss, "#1f6fb4"], [history.test_loss, "#e8710a"]]) {
    g.strokeStyle = colour; g.lineWidth = 1.5; g.beginPath();
    series.forEach((v, n) => {
      if (v === null) return;
      const x = 30 + ((width - 36) * history.x[n]) / last, y = height - 14 - ((height - 20) * (v - low)) / (high - low || 1);
      n ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
  }
  g.fillStyle = "#333"; g.font = "10px sans-serif";
  g.fillText(high.toPrecision(3), 0, 10); g.fillText(String(low), 0, height - 14);
  g.fillText(`epoch ${last.toFixed(1)}`, width - 60, height - 2);
}

// ------------------------------------------------------------------ panels
function showWeight(weight) {
  const panel = $('[data-panel="weight"]');
  panel.hidden = false;
  panel.dataset.weight = `${weight.layer},${weight.i},${weight.j}`;
  setText("weight-name", `W${weight.layer}[${weight.i},${weight.j}]: layer ${weight.layer}, from unit ${weight.i} below to unit ${weight.j}`);
  setText("weight", weight.value);
  setText("grad", weight.grad);
  setText("batch-rows", weight.rows.join(", "));
  $('[data-value="matrix-form"]').innerHTML = weight.formula;
  setText("norm-notes", weight.norm_notes.join(" "));
  setText("trace", weight.trace);
  for (const line of $$('[data-panel="diagram"] line.selected')) line.classList.remove("selected");
  $(`[data-weight="${weight.layer},${weight.i},${weight.j}"]`, $('[data-panel="diagram"]'))?.classList.add("selected");
}

function showNeuron(neuron) {
  const panel = $('[data-panel="neuron"]');
  panel.hidden = false;
  panel.dataset.neuron = `${neuron.layer},${neuron.unit}`;
  const order = neuron.norm ? ["Z", "row_mean", "row_std", "xhat", "Zhat", "A", "dA", "fprime", "dZhat", "dZ"]
                            : ["Z", "A", "dA", "fprime", "dZ"];
  const rows = order.filter((name) => neuron[name]);
  const input = neuron.norm ? "\u1e90" : "Z";  // the activation's input: Zhat with a norm
  const names = { fprime: `${neuron.activation}'(${input})`, xhat: "x\u0302 = (Z \u2212 \u03bc) / \u03c3",
                  Zhat: "\u1e90 = \u03b3 x\u0302 + \u03b2", dZhat: "d\u1e90", row_mean: "\u03bc (row)",
                  row_std: "\u03c3 (row)",
                  Z: neuron.norm ? `Z = ${neuron.layer === 1 ? "X" : `A${neuron.layer - 1}`} W` : "Z" };
  const unit = neuron.norm ? `<p data-value="norm-numbers">${neuron.norm} norm of this unit: \u03b3 = ${neuron.gamma}, \u03b2 = ${neuron.beta}` +
    (neuron.mean !== undefined ? `; over the batch \u03bc = ${neuron.mean}, \u03c3 = ${neuron.std}` : "") + "</p>" +
    `<p class="hint">dZ comes from d\u1e90 through the norm's backward, which ${neuron.norm === "batch" ? "mixes the batch's rows" : "mixes the units of each row"}: it is no elementwise product (the weight panel's trace writes it out).</p>` : "";
  panel.innerHTML = `<button data-action="close-panel" data-close="neuron" class="close" title="close this panel">&#x2715;</button>
    <h3>layer ${neuron.layer}, unit ${neuron.unit} (${neuron.activation})</h3>${unit}
    <p class="hint">Rows of the current batch (first ${neuron.rows.length} of ${neuron.n_rows}), dropout off.</p>
    <table><tr><th>row</th>${neuron.rows.map((r) => `<th>${r}</th>`).join("")}</tr>
    ${rows.map((name) => `<tr data-row="${name}"><th>${names[name] || name}</th>${neuron[name].map((v) => `<td>${v}</td>`).join("")}</tr>`).join("")}</table>`;
}

// ------------------------------------------------------------------ files
function saveFile(message) {
  const bytes = message.base64 !== undefined ? Uint8Array.from(atob(message.base64), (c) => c.charCodeAt(0)) : message.text;
  const url = URL.createObjectURL(new Blob([bytes], { type: message.mime }));
  const link = document.createElement("a");
  link.href = url; link.download = message.name;
  document.body.append(link); link.click(); link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function readFile(input, handle) {
  const file = input.files[0];
  input.value = "";
  if (!file) return;
  if (file.size > MAX_UPLOAD) return showMessage(`'${file.name}' is larger than 1 MiB; the playground takes small files.`);
  const reader = new FileReader();
  reader.onload = () => handle(file.name, reader.result);
  if (input.dataset.field === "csv") reader.readAsText(file); else reader.readAsDataURL(file);
}

// ------------------------------------------------------------------ wiring
function wire() {
  for (const action of ["play", "pause", "step", "epoch", "reset"]) {
    $(`[data-action="${action}"]`).addEventListener("click", () => send({ type: "action", action }));
  }
  $('[data-action="download-model"]').addEventListener("click", () => send({ type: "download", what: "model" }));
  $('[data-action="download-history"]').addEventListener("click", () => send({ type: "download", what: "history" }));
  $('[data-action="download-batch"]').addEventListener("click", () => send({ type: "download", what: "batch" }));
  document.addEventListener("click", (event) => {  // the panels' close buttons (the neuron panel's is redrawn)
    const button = event.target.closest('[data-action="close-panel"]');
    if (!button) return;
    send({ type: "close_panel", panel: button.dataset.close });
    $(`[data-panel="${button.dataset.close}"]`).hidden = true;
    if (button.dataset.close === "weight") for (const line of $$('[data-panel="diagram"] line.selected')) line.classList.remove("selected");
  });
  $('[data-action="add-layer"]').addEventListener("click", () => {
    if (state.hidden.length >= state.maxHidden) return showMessage(`The playground shows at most ${state.maxHidden} hidden layers.`);
    state.hidden.push(newLayer());
    drawLayerEditor();
    configure();
  });
  for (const name of ["data", "n_samples", "noise", "test_fraction", "data_seed", "schedule", "batch_size", "l1",
                      "l2", "seed", "loss", "output_bias", "output_slope", "output_alpha", "dtype", "init"]) {
    $(`[data-field="${name}"]`).addEventListener("change", () => configure());
  }
  $('[data-field="output"]').addEventListener("change", () => { showOutputParameters(); configure(); });
  $('[data-field="optimizer"]').addEventListener("change", optimizerChanged);
  $('[data-field="learning_rate"]').addEventListener("change", () => {  // typed by the user: it stays theirs
    state.rateChosen = true;
    rateWarning();
    configure();
  });
  $('[data-action="undo-rate"]').addEventListener("click", undoRate);
  $('[data-action="use-rate"]').addEventListener("click", useOptimizerRate);
  $('[data-field="features"]').addEventListener("change", () => configure());
  $('[data-field="preset"]').addEventListener("change", (event) => {
    const preset = state.presets[event.target.value];
    if (!preset) return;
    const { title, ...settings } = preset;
    const config = { ...readConfig(), ...settings, data: { ...readConfig().data, ...preset.data } };
    state.rateChosen = false;  // the preset's rate: picking another optimizer then moves it
    fillForm(config);  // the form shows the preset at once; the server's reply then follows it
    configure(config);
  });
  $('[data-field="csv"]').addEventListener("change", (event) =>
    readFile(event.target, (name, text) => send({ type: "upload_csv", name, text })));
  $('[data-field="model"]').addEventListener("change", (event) =>
    readFile(event.target, (name, url) => send({ type: "load_model", name, data: url.slice(url.indexOf(",") + 1) })));
}

wire();
connect();
