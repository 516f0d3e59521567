// Explorer page: pick an architecture, configure it, and see every layer's figures. State lives in the URL.

import { architecture, debounce, download, facts, get, post } from "./api.js";
import { draw, palette } from "./charts.js";
import { clearError as clearBanner, showError as showBanner } from "./errors.js";
import { approx, bytes, count, escapeHtml, flops, shape } from "./format.js";
import { SchemaForm } from "./form.js";
import { GraphView } from "./graph.js";
import { LayerTable } from "./table.js";
import { readUrlState, urlQuery, writeUrlState } from "./urlstate.js";

const $ = (id) => document.getElementById(id);
const CHOICES = facts().choices;
const OPTIMIZERS = CHOICES.optimizers; // [{id, label, short}]
const PRECISIONS = CHOICES.precisions; // [{id, label, dtype, autocast}]
const KV_CACHE_DTYPES = CHOICES.kv_cache_dtypes; // [{id, description}]
const PARTS = ["weights", "buffers", "gradients", "optimizer_state", "activations", "inputs", "transient"];

const state = {
  arch: "alexnet",
  config: {},
  batch: 1,
  shape: "",
  optimizer: CHOICES.default_optimizer,
  precision: "fp32",
  layer: null,
  checkpointing: false,
  gpus: 1,
  sharding: "fsdp",
  offload: "none",
  tp: 1,
  pp: 1,
  microbatches: 0, // 0: as many as pipeline stages
  newTokens: 128,
  kvCache: "auto",
  tuning: "full", // or "lora", "qlora"
  loraR: 16,
  loraTargets: "all-linear",
  loraDropout: 0,
  fitMode: "train",
  view: "table", // or "graph"
};
let gpuCatalog = null; // GET /api/gpus
let generated = null; // the generate report, for models that generate
const maxBatches = new Map(); // key -> max-batch report

function precisionOf(id) {
  return PRECISIONS.find((p) => p.id === id) || PRECISIONS[0];
}
let info = null; // the architecture's description
let summary = null;
let memory = { inference: null, train: {} };
let generation = 0;

$("config-form").addEventListener("submit", (event) => event.preventDefault()); // Enter in a field recomputes live
const form = new SchemaForm($("config-form"), () => {
  state.config = diffFromDefaults(form.values());
  $("preset").value = matchingPreset();
  refresh();
});
const table = new LayerTable($("layer-table"), {
  onSelect: (row) => {
    state.layer = row.path;
    writeUrl();
    showLayer(row);
    graph.select(row.path);
  },
});
// Clicking a node selects its layer in the table, which shows its worked formulas (and the reverse, above).
const graph = new GraphView($("graph-view"), { onSelect: (path) => table.select(path) });
let graphFor = null; // the request body the drawn graph answers

function diffFromDefaults(values) {
  const out = {};
  for (const [key, value] of Object.entries(values)) {
    if (JSON.stringify(value) !== JSON.stringify(info.defaults[key])) out[key] = value;
  }
  return out;
}

function matchingPreset() {
  const full = { ...info.defaults, ...state.config };
  const hit = info.presets.find((p) => JSON.stringify(p.config) === JSON.stringify(full));
  return hit ? hit.name : "";
}

// ---------------------------------------------------------------- URL state

const URL_STATE = {
  arch: { param: "a", fallback: "alexnet", keep: true },
  config: { param: "c", type: "json", fallback: {} },
  batch: { param: "b", type: "int", fallback: 1 },
  shape: { param: "s", fallback: "" },
  optimizer: { param: "o", fallback: CHOICES.default_optimizer },
  precision: { param: "p", fallback: "fp32" },
  layer: { param: "l", fallback: null },
  checkpointing: { param: "ck", type: "bool", fallback: false },
  gpus: { param: "g", type: "int", fallback: 1 },
  sharding: { param: "sh", fallback: "fsdp" },
  offload: { param: "off", fallback: "none" },
  tp: { param: "tp", type: "int", fallback: 1 },
  pp: { param: "pp", type: "int", fallback: 1 },
  microbatches: { param: "mb", type: "int", fallback: 0 },
  newTokens: { param: "nt", type: "int", fallback: 128 },
  kvCache: { param: "kv", fallback: "auto" },
  tuning: { param: "ft", fallback: "full" },
  loraR: { param: "r", type: "int", fallback: 16 },
  loraTargets: { param: "lt", fallback: "all-linear" },
  loraDropout: { param: "ld", type: "float", fallback: 0 },
  view: { param: "v", fallback: "table" },
};

function readUrl() {
  readUrlState(URL_STATE, state);
  // Links from before precision and dtype were one control carry dt=bfloat16: the plain precision of that dtype.
  const params = new URLSearchParams(location.search);
  const legacy = PRECISIONS.find((p) => p.dtype === params.get("dt") && !p.autocast);
  if (!params.has("p") && legacy) state.precision = legacy.id;
  if (!state.config || typeof state.config !== "object") state.config = {};
  if (state.view !== "graph") state.view = "table";
}

function writeUrl() {
  const preset = info ? matchingPreset() : "";
  // a preset's name, not its (possibly long) config
  writeUrlState(URL_STATE, { ...state, config: preset ? { preset } : state.config });
}

// ---------------------------------------------------------------- requests

function selection() {
  const body = { architecture: state.arch, config: state.config, dtype: precisionOf(state.precision).dtype, input: { batch_size: state.batch } };
  const dims = state.shape.split(/[\s,x×]+/).filter(Boolean).map(Number);
  if (dims.length) body.input.shape = dims;
  return body;
}

function memoryBody() {
  const { dtype, ...rest } = selection();
  return { ...rest, precision: state.precision, ...(state.tuning === "qlora" ? { quantization: { method: "nf4" } } : {}) };
}

function adapter() {
  if (state.tuning === "full") return null;
  const names = state.loraTargets.split(/[\s,]+/).filter(Boolean);
  const targets = !names.length || names.includes("all-linear") ? "all-linear" : names;
  return { kind: "lora", r: state.loraR, alpha: 2 * state.loraR, target_modules: targets, dropout: state.loraDropout };
}

function generationOptions() {
  return { mode: "generate", new_tokens: state.newTokens, ...(state.kvCache !== "auto" ? { kv_cache_dtype: state.kvCache } : {}) };
}

/** Whether the step offloads: only a sharded step (zero2, fsdp over several GPUs) can. */
function offloads() {
  return state.gpus > 1 && state.sharding !== "ddp" && state.offload !== "none";
}

function trainingOptions() {
  const tuned = adapter();
  return {
    checkpointing: state.checkpointing,
    gpus: state.gpus,
    ...(state.gpus > 1 ? { sharding: state.sharding } : {}),
    ...(offloads() ? { offload: state.offload } : {}),
    ...(state.tp > 1 ? { tp: state.tp } : {}),
    ...(state.pp > 1 ? { pp: state.pp, ...(state.microbatches > 0 ? { microbatches: state.microbatches } : {}) } : {}),
    ...(tuned ? { adapter: tuned } : {}),
  };
}

// ---------------------------------------------------------------- fine-tuning recipes (GET /api/recipes)

let recipes = [];

async function loadRecipes() {
  try {
    recipes = (await get("/api/recipes")).recipes;
  } catch (error) {
    showError(error);
    return;
  }
  for (const recipe of recipes) $("recipe").add(new Option(recipe.label, recipe.id));
}

/** Open a recipe: its request (a POST /api/memory body) becomes the page's state, as a link would carry it. */
function openRecipe(id) {
  const recipe = recipes.find((r) => r.id === id);
  if (!recipe) return;
  const request = recipe.request;
  const adapter = request.adapter;
  const targets = adapter && Array.isArray(adapter.target_modules) ? adapter.target_modules.join(",") : "all-linear";
  const next = {
    ...state,
    arch: request.architecture,
    config: request.config,
    batch: request.input.batch_size,
    shape: (request.input.shape || []).join(", "),
    optimizer: request.optimizer,
    precision: request.precision,
    checkpointing: Boolean(request.checkpointing),
    gpus: 1,
    layer: null,
    tuning: !adapter ? "full" : request.quantization ? "qlora" : "lora",
    loraR: adapter ? adapter.r : 16,
    loraTargets: targets,
    loraDropout: adapter ? adapter.dropout || 0 : 0,
  };
  location.assign(`${location.pathname}?${urlQuery(URL_STATE, next)}`);
}

async function planServing() {
  const gpu = $("serving-gpu").value;
  const total = Math.max(2, Number.parseInt($("serving-tokens").value, 10) || 4096);
  // A server stores the weights in the dtype it computes in: an AMP choice serves in its autocast dtype.
  const chosen = precisionOf(state.precision);
  const precision = PRECISIONS.find((p) => !p.autocast && p.dtype === (chosen.autocast || chosen.dtype)).id;
  const body = {
    architecture: state.arch,
    config: state.config,
    precision,
    gpu,
    gpu_memory_utilization: Number($("serving-utilization").value) || 0.9,
    prompt_tokens: Math.ceil(total / 2),
    output_tokens: Math.floor(total / 2),
    ...(state.tuning === "qlora" ? { quantization: { method: "nf4" } } : {}),
  };
  const out = $("serving-result");
  try {
    const r = await post("/api/serving", body, { busyText: `Planning serving on ${gpu}…` });
    out.classList.remove("muted");
    out.innerHTML = `<strong>${count(r.kv_tokens)} tokens</strong> of KV cache (${count(r.kv_blocks)} blocks of ${r.block_size}): <strong>${count(r.max_concurrent_requests)} concurrent ${count(r.tokens_per_request)}-token requests</strong> on ${escapeHtml(gpu)} at ${Math.round(r.gpu_memory_utilization * 100)}% (weights ${bytes(r.weight_bytes)}, prefill activations ${bytes(r.activation_peak_bytes)}, KV ${bytes(r.kv_bytes_per_token)} per token). Estimated time to first token ${(r.ttft_seconds * 1e3).toFixed(0)} ms, per output token ${(r.tpot_seconds * 1e3).toFixed(1)} ms (a roofline: ${escapeHtml(r.assumptions.join("; "))}).`;
  } catch (error) {
    out.classList.add("muted");
    out.textContent = error.message || String(error);
  }
}

// What is on screen answers the previous request until the new answer arrives: dim it, so it cannot pass for
// current (and keep it dimmed when the new request fails).
const STALE = ["tiles", "table-view", "graph-view", "fits-panel", "charts-panel", "layer-detail"];
function markStale(on, ids = STALE) {
  for (const id of ids) $(id)?.classList.toggle("stale", on);
}

async function refresh() {
  writeUrl();
  const mine = ++generation;
  memory = { inference: null, train: {} }; // the last model's saved bytes must not sit beside the new layers
  markStale(true);
  try {
    const result = await post("/api/summary", selection(), { busyText: "Tracing the layers…" });
    if (mine !== generation) return;
    summary = result;
    clearError();
    renderSummary();
    markStale(false, ["table-view", "layer-detail", "charts-panel"]);
  } catch (error) {
    if (mine === generation) showError(error);
    return;
  }
  await refreshMemory(mine);
  if (mine === generation && memory.inference) markStale(false);
}

async function refreshMemory(mine) {
  try {
    // One request: the inference peak and a training step with every optimizer.
    const overview = await post("/api/memory/optimizers", { ...memoryBody(), ...trainingOptions() }, { busyText: "Estimating memory…" });
    if (mine !== generation) return;
    memory = { inference: overview.inference, train: overview.training };
    renderMemory();
    generated = null;
    if (info.generates) {
      generated = await post("/api/memory", { ...memoryBody(), ...generationOptions() }, { busyText: "Estimating generation…" });
      if (mine !== generation) return;
    }
    renderGeneration();
    renderFits();
  } catch (error) {
    if (mine === generation) showError(error, "memory");
  }
}

function renderGeneration() {
  if (!generated) {
    setTile("tile-generation", "–", info.generates ? "" : "this model does not generate text");
    return;
  }
  const g = generated;
  setTile("tile-generation", bytes(g.peak_bytes), `${g.prompt_tokens.toLocaleString("en-US")} + ${g.new_tokens.toLocaleString("en-US")} tokens · KV cache ${bytes(g.kv_cache_bytes)}${g.kv_cache_dtype && g.kv_cache_dtype !== "auto" ? ` (${g.kv_cache_dtype})` : ""} · peak in ${g.phase}`);
}

async function gpus() {
  if (!gpuCatalog) {
    gpuCatalog = (await get("/api/gpus")).gpus;
    $("serving-gpu").innerHTML = gpuCatalog
      .map((g) => `<option value="${escapeHtml(g.id)}"${g.id === "h100-80gb" ? " selected" : ""}>${escapeHtml(g.name)}</option>`)
      .join("");
  }
  return gpuCatalog;
}

function headroom(fit) {
  if (!fit) return "–";
  const sign = fit.fits ? "fit" : "no-fit";
  const text = fit.fits ? `${bytes(fit.headroom_bytes)} free` : `${bytes(-fit.headroom_bytes)} short`;
  return `<span class="${sign}">${text}</span>`;
}

function fitKey(gpu) {
  return JSON.stringify([selection(), state.precision, state.optimizer, state.fitMode, trainingOptions(), generationOptions(), gpu]);
}

async function renderFits() {
  const catalog = await gpus();
  const training = memory.train[state.optimizer];
  const byGpu = (report) => new Map((report && report.fits ? report.fits : []).map((f) => [f.gpu, f]));
  const inference = byGpu(memory.inference);
  const train = byGpu(training);
  const gen = byGpu(generated);
  const optimizer = OPTIMIZERS.find((o) => o.id === state.optimizer).label;
  const perGpu = state.gpus > 1 ? ` (per GPU, ${state.gpus} × ${state.sharding}${offloads() ? `, offload ${state.offload}` : ""})` : "";
  const head = `<thead><tr><th>GPU</th><th>Memory</th><th>Usable</th><th>Inference</th><th>Training (${escapeHtml(optimizer)})${perGpu}</th>${generated ? "<th>Generation</th>" : ""}<th>Largest batch</th></tr></thead>`;
  const rows = catalog.map((g) => {
    const known = maxBatches.get(fitKey(g.id));
    const batch = known ? `${known.batch_size.toLocaleString("en-US")}` : `<button type="button" class="button ghost" data-max-batch="${g.id}">find</button>`;
    return `<tr><td>${escapeHtml(g.name)}</td><td>${bytes(g.memory_bytes)}</td><td>${bytes(g.usable_bytes)}</td>
      <td>${headroom(inference.get(g.id))}</td><td>${headroom(train.get(g.id))}</td>${generated ? `<td>${headroom(gen.get(g.id))}</td>` : ""}
      <td data-batch-for="${g.id}">${batch}</td></tr>`;
  });
  $("fits-table").innerHTML = head + `<tbody>${rows.join("")}</tbody>`;
  $("fits-note").textContent = "Usable: the GPU's memory less a 1 GiB CUDA context reserve, times 95% for the allocator. Largest batch: the exact estimate at that batch fits, one more does not.";
}

async function findMaxBatch(gpu) {
  const cell = document.querySelector(`[data-batch-for="${gpu}"]`);
  const body = { ...memoryBody(), mode: state.fitMode, optimizer: state.optimizer, gpu, new_tokens: state.newTokens, ...(state.fitMode === "train" ? trainingOptions() : {}), ...(state.fitMode === "generate" ? generationOptions() : {}) };
  delete body.input.batch_size;
  try {
    const report = await post("/api/max-batch", body, { busyText: `Finding the largest batch on ${gpu}…` });
    maxBatches.set(fitKey(gpu), report);
    cell.innerHTML = `${report.batch_size.toLocaleString("en-US")} <span class="muted">(${bytes(report.peak_bytes || 0)})</span>`;
  } catch (error) {
    showError(error, "memory");
  }
}

// ---------------------------------------------------------------- rendering

function setTile(id, value, sub) {
  const tile = $(id);
  tile.querySelector("[data-value]").textContent = value;
  tile.querySelector("[data-sub]").textContent = sub || "";
}

function renderSummary() {
  const totals = summary.totals;
  const active = totals.active_params !== totals.params ? `${count(totals.active_params)} active per token · ` : "";
  setTile("tile-params", count(totals.params), `${approx(totals.params)} · ${active}${count(totals.trainable_params)} trainable · ${bytes(totals.param_bytes)} at ${summary.dtype}`);
  setTile("tile-flops", flops(totals.flops), `${count(totals.macs)} MACs · batch ${summary.batch_size}`);
  setTile("tile-inference", "…", "");
  setTile("tile-training", "…", "");
  $("input-shape").placeholder = summary.input_size.join(", "); // the default can depend on the config
  $("layer-count").textContent = `(${summary.layers.length.toLocaleString("en-US")} modules)`;
  table.render(summary, savedByPath());
  const row = summary.layers.find((r) => r.path === state.layer) || summary.layers.find((r) => r.is_leaf && r.params > 0) || null;
  if (row) table.select(row.path, { notify: false });
  showLayer(row);
  renderCharts();
  if (state.view === "graph") loadGraph();
}

// ---------------------------------------------------------------- the graph view

function setView(view) {
  state.view = view;
  writeUrl();
  const graphView = view === "graph";
  $("view-table").setAttribute("aria-pressed", String(!graphView));
  $("view-graph").setAttribute("aria-pressed", String(graphView));
  $("table-view").hidden = graphView;
  $("table-tools").hidden = graphView;
  $("graph-view").hidden = !graphView;
  $("graph-tools").hidden = !graphView;
  $("graph-note").hidden = !graphView;
  if (graphView && summary) loadGraph();
}

async function loadGraph() {
  const body = JSON.stringify(selection());
  if (graphFor === body) return;
  const mine = generation;
  try {
    const report = await post("/api/graph", selection(), { busyText: "Drawing the graph…" });
    if (mine !== generation) return;
    graphFor = body;
    graph.setData(report);
    graph.select(state.layer, { scroll: false });
    const ops = report.nodes.filter((n) => n.kind === "op").length;
    const collapsed = report.collapsed_by_default.length;
    $("graph-note").textContent = `${report.nodes.length.toLocaleString("en-US")} nodes (${ops.toLocaleString("en-US")} ops that join, split or reshape data), ${report.edges.length.toLocaleString("en-US")} tensors. ${collapsed ? `${collapsed} repeated blocks start collapsed: double-click one, or press Enter on it, to open it.` : "Click a node to see its layer's formulas; ▾ collapses a block."}`;
    $("graph-view").classList.remove("stale");
  } catch (error) {
    if (mine === generation) showError(error);
  }
}

function savedByPath() {
  const report = memory.train[state.optimizer];
  return new Map((report && report.layers ? report.layers : []).map((r) => [r.path, r.saved_bytes]));
}

function renderMemory() {
  const inference = memory.inference;
  const training = memory.train[state.optimizer];
  setTile("tile-inference", bytes(inference.peak_bytes), `one forward at batch ${inference.batch_size}, ${inference.precision}`);
  const optimizer = OPTIMIZERS.find((o) => o.id === state.optimizer).label;
  if (training.kind === "refused") setTile("tile-training", "–", training.detail);
  else {
    const host = training.host_bytes ? ` · ${bytes(training.host_bytes)} on the host (offload ${training.offload})` : "";
    const split = training.tp > 1 ? ` · per GPU, tensor parallel over ${training.tp}` : "";
    const stages = training.stages
      ? ` · largest of ${training.stages.length} pipeline stages (${training.microbatches} micro-batches): ${training.stages.map((s) => `stage ${s.stage} ${bytes(s.peak_bytes)}`).join(", ")}`
      : "";
    setTile("tile-training", bytes(training.peak_bytes), `${optimizer}, ${training.precision} · peak in the ${training.phase === "optimizer" ? "optimizer step" : `${training.phase} pass`}${host}${split}${stages}`);
  }
  table.setSaved(savedByPath());
  if (state.layer !== null) showLayer(summary.layers.find((r) => r.path === state.layer));
  renderMemoryChart();
  if (training.kind !== "refused") renderFormula(training);
}

function renderFormula(report) {
  const f = report.formula;
  if (!f) {
    $("formula").innerHTML = "";
    return;
  }
  $("formula").innerHTML = `
    <h3>Textbook estimate beside the exact figure</h3>
    <div class="formula-grid">
      <div><span class="tile-label">Textbook (${escapeHtml(f.expression)})</span><strong>${bytes(f.estimate_bytes)}</strong></div>
      <div><span class="tile-label">Exact peak</span><strong>${bytes(f.exact_bytes)}</strong></div>
      <div><span class="tile-label">Saved for backward</span><strong>${bytes(report.saved_activation_bytes)}</strong></div>
    </div>
    <ol class="worked">${f.lines.map((l) => `<li>${escapeHtml(l)}</li>`).join("")}</ol>`;
}

function showLayer(row) {
  const panel = $("layer-detail");
  if (!row) {
    panel.innerHTML = `<h2 class="panel-title">Worked example</h2><p class="muted">Select a layer to see how its figures are computed.</p>`;
    return;
  }
  const saved = table.saved.get(row.path) || 0;
  const inputs = row.input_shapes.map((s) => shape(s)).join(", ") || "–";
  const lines = row.explain.length
    ? `<ol class="worked">${row.explain.map((l) => `<li>${escapeHtml(l)}</li>`).join("")}</ol>`
    : `<p class="muted">No formula for this layer type: its figures come from running it on meta tensors.</p>`;
  panel.innerHTML = `
    <h2 class="panel-title">${escapeHtml(row.path || row.name)} <span class="muted">${escapeHtml(row.type)}</span></h2>
    <dl class="facts">
      <dt>Input</dt><dd class="mono">${inputs}</dd>
      <dt>Output</dt><dd class="mono">${shape(row.output_shape)}</dd>
      <dt>Parameters</dt><dd>${count(row.params_inclusive)}${row.params !== row.params_inclusive ? ` <span class="muted">(${row.params ? `${count(row.params)} in this module itself, the rest in its sublayers` : "all in its sublayers"})</span>` : ""}</dd>
      <dt>FLOPs</dt><dd>${flops(row.flops_inclusive)} <span class="muted">= 2 × ${count(row.macs_inclusive)} MACs</span></dd>
      <dt>Output size</dt><dd>${bytes(row.output_bytes)}</dd>
      <dt>Saved for backward</dt><dd>${saved ? bytes(saved) : "–"}</dd>
    </dl>
    <h3 class="detail-subtitle">How it is computed</h3>
    ${lines}${labLinks(row.type)}`;
}

// The course's worked examples for this kind of layer (the labs declare the layer types they explain).
function labLinks(type) {
  const labs = facts().labs.filter((lab) => lab.layer_types.includes(type));
  if (!labs.length) return "";
  const links = labs.map(
    (lab) => `<a class="lab-link" data-lab="${escapeHtml(lab.name)}" href="/labs?lab=${encodeURIComponent(lab.name)}">Work it through in the ${escapeHtml(lab.title)} lab</a>`,
  );
  return `<p class="lab-links">${links.join(" · ")}</p>`;
}

function leafRows() {
  return summary.layers.filter((r) => r.calls && r.is_leaf);
}

function axisFor(bars, title) {
  return { title, tickangle: -40, tickfont: { size: 10 }, showticklabels: bars <= 60, automargin: true };
}

// Per-layer charts of a deep model read better per block ("layer1.0", "model.layers.7") or per stage.
function groupKey(path, level) {
  if (level === "layer") return path;
  const parts = path.split(".");
  const index = parts.findIndex((p) => /^\d+$/.test(p));
  if (index < 0) return level === "stage" ? parts[0] : path;
  return parts.slice(0, level === "block" ? index + 1 : Math.max(index, 1)).join(".");
}

function grouped(rows, value, level) {
  const sums = new Map();
  for (const row of rows) {
    const key = groupKey(row.path || row.type, level);
    sums.set(key, (sums.get(key) || 0) + value(row));
  }
  return { x: [...sums.keys()], y: [...sums.values()] };
}

function chartLevel(rows) {
  const chosen = $("chart-group").value;
  if (chosen !== "auto") return chosen;
  return rows.length > 40 ? "block" : "layer";
}

function renderCharts() {
  const withParams = summary.layers.filter((r) => r.params > 0);
  const level = chartLevel(withParams);
  const per = { layer: "layer", block: "block", stage: "stage" }[level];
  const params = grouped(withParams, (r) => r.params, level);
  draw($("chart-params"), [
    {
      type: "bar",
      x: params.x,
      y: params.y,
      marker: { color: palette[0] },
      hovertemplate: "%{x}<br>%{y:,} parameters<extra></extra>",
    },
  ], { yaxis: { title: "parameters (count)" }, xaxis: axisFor(params.x.length, per), margin: { l: 64, r: 16, t: 16, b: 96 } });

  const withFlops = summary.layers.filter((r) => r.flops > 0);
  const work = grouped(withFlops, (r) => r.flops / 1e9, level);
  draw($("chart-flops"), [
    {
      type: "bar",
      x: work.x,
      y: work.y,
      marker: { color: palette[1] },
      hovertemplate: "%{x}<br>%{y:,.3f} GFLOPs<extra></extra>",
    },
  ], { yaxis: { title: "GFLOPs per forward" }, xaxis: axisFor(work.x.length, per), margin: { l: 64, r: 16, t: 16, b: 96 } });

  const leaves = leafRows();
  draw($("chart-activations"), [
    {
      type: "scatter",
      mode: "lines+markers",
      x: leaves.map((_, i) => i + 1),
      y: leaves.map((r) => r.output_bytes / 2 ** 20),
      text: leaves.map((r) => `${r.path} (${r.type})<br>${shape(r.output_shape)}`),
      line: { color: palette[2], shape: "hv" },
      hovertemplate: "%{text}<br>%{y:,.3f} MiB<extra></extra>",
    },
  ], { yaxis: { title: "output size (MiB)" }, xaxis: { title: "layer, in order of execution" } });
}

function renderMemoryChart() {
  const reports = [["Inference", memory.inference], ...OPTIMIZERS.map((o) => [`Train ${o.short}`, memory.train[o.id]])].filter(([, r]) => r && r.kind !== "refused");
  const labels = reports.map(([label]) => label);
  const traces = PARTS.map((part, i) => ({
    type: "bar",
    name: part.replace("_", " "),
    x: labels,
    y: reports.map(([, r]) => r.breakdown[part] / 2 ** 20),
    marker: { color: palette[i] },
    hovertemplate: `%{x}<br>${part.replace("_", " ")}: %{y:,.1f} MiB<extra></extra>`,
  }));
  traces.push({
    type: "scatter",
    mode: "markers",
    name: "textbook formula",
    x: labels,
    y: reports.map(([, r]) => (r.formula ? r.formula.estimate_bytes / 2 ** 20 : null)),
    marker: { symbol: "diamond", size: 12, color: "#111827", line: { color: "#ffffff", width: 1.5 } },
    hovertemplate: "%{x}<br>textbook: %{y:,.1f} MiB<extra></extra>",
  });
  draw($("chart-memory"), traces, {
    barmode: "stack",
    yaxis: { title: "memory at the peak (MiB)" },
    xaxis: { title: "pass" },
    legend: { orientation: "v", x: 1.02, y: 1, font: { size: 11 } },
    margin: { l: 64, r: 8, t: 24, b: 48 },
  });
}

// ---------------------------------------------------------------- errors

function clearError() {
  clearBanner($("error"));
}

function fieldFor(body) {
  if (!body.field) return null;
  const name = body.field.replace(/^config\./, "").split(".")[0];
  return document.querySelector(`#config-form [name="${CSS.escape(name)}"]`)
    || (body.field.startsWith("input") ? $("input-shape") : null)
    || (body.field.endsWith("batch_size") ? $("batch-size") : null)
    || (body.field === "precision" || body.field === "dtype" ? $("precision") : null);
}

function showError(error, what = "summary") {
  showBanner($("error"), error, {
    title: what === "memory" ? "Memory estimate failed" : "This configuration does not work",
    fieldFor,
    note: summary ? " The last good result stays below." : "",
  });
}

// ---------------------------------------------------------------- set-up

async function selectArchitecture(name, { keepConfig = false } = {}) {
  try {
    info = await architecture(name);
  } catch (error) {
    showError(error);
    return;
  }
  state.arch = info.name;
  if (!keepConfig) {
    state.config = {};
    state.shape = "";
    state.layer = null;
  }
  if (state.config.preset) {
    const named = info.presets.find((p) => p.name === state.config.preset);
    state.config = named ? diffFromDefaults(named.config) : {};
  }
  document.querySelectorAll(".arch-card").forEach((card) => {
    const on = card.dataset.arch === info.name;
    card.classList.toggle("selected", on);
    card.setAttribute("aria-checked", String(on));
    card.tabIndex = on ? 0 : -1;
  });
  $("preset").innerHTML = `<option value="">Custom</option>${info.presets
    .map((p) => `<option value="${escapeHtml(p.name)}">${escapeHtml(p.title)}</option>`)
    .join("")}`;
  form.render(info.config_schema);
  form.setValues({ ...info.defaults, ...state.config });
  $("preset").value = matchingPreset();
  $("input-shape").placeholder = info.default_input.join(", ");
  $("generate-field").hidden = !info.generates;
  // The cache's storage choices are the model's own (GET /api/architectures): fp8 and int8 where it has them.
  const stored = ["auto", ...info.kv_cache_dtypes];
  if (!stored.includes(state.kvCache)) state.kvCache = "auto";
  $("kv-cache").replaceChildren(...KV_CACHE_DTYPES.filter((k) => stored.includes(k.id)).map((k) => new Option(k.id === "auto" ? "the compute dtype" : k.id, k.id)));
  $("kv-cache").value = state.kvCache;
  $("kv-cache-field").hidden = info.kv_cache_dtypes.length === 0;
  $("fit-mode").querySelector('[value="generate"]').disabled = !info.generates;
  $("input-shape").value = state.shape;
  summary = null;
  refresh();
}

function bindControls() {
  const cards = [...document.querySelectorAll(".arch-card")];
  // Arrows move the choice at once (a radio group) but load only once the key rests: three presses, one load.
  const loadLater = debounce((name) => selectArchitecture(name), 450);
  cards.forEach((card, index) => {
    card.addEventListener("click", () => selectArchitecture(card.dataset.arch));
    card.addEventListener("keydown", (event) => {
      const step = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      event.preventDefault();
      const next = cards[(index + step + cards.length) % cards.length];
      cards.forEach((c) => {
        c.setAttribute("aria-checked", String(c === next));
        c.classList.toggle("selected", c === next);
        c.tabIndex = c === next ? 0 : -1;
      });
      next.focus();
      loadLater(next.dataset.arch);
    });
  });
  $("preset").addEventListener("change", () => {
    const preset = info.presets.find((p) => p.name === $("preset").value);
    if (!preset) return;
    state.config = diffFromDefaults(preset.config);
    form.setValues(preset.config);
    refresh();
  });
  const later = debounce(refresh, 350);
  $("input-shape").addEventListener("input", () => {
    state.shape = $("input-shape").value.trim();
    later();
  });
  const setBatch = (value) => {
    const batch = Number.parseInt(value, 10);
    if (!Number.isFinite(batch)) return;
    state.batch = batch;
    $("batch-size").value = String(batch);
    $("batch-range").value = String(Math.min(batch, 256));
    later();
  };
  $("batch-size").addEventListener("input", () => setBatch($("batch-size").value));
  $("batch-range").addEventListener("input", () => setBatch($("batch-range").value));
  $("precision").addEventListener("change", () => {
    state.precision = $("precision").value;
    memory = { inference: null, train: {} };
    refresh(); // the parameters' dtype changes the summary's bytes too
  });
  $("optimizer").addEventListener("change", () => {
    state.optimizer = $("optimizer").value;
    writeUrl();
    if (memory.inference) {
      renderMemory(); // every optimizer's step is already there
      renderFits();
    }
  });
  $("tuning").addEventListener("change", () => {
    state.tuning = $("tuning").value;
    refresh();
  });
  $("lora-r").addEventListener("input", () => {
    state.loraR = Math.max(1, Number.parseInt($("lora-r").value, 10) || 1);
    later();
  });
  $("lora-targets").addEventListener("input", () => {
    state.loraTargets = $("lora-targets").value.trim() || "all-linear";
    later();
  });
  $("lora-dropout").addEventListener("input", () => {
    const value = Number.parseFloat($("lora-dropout").value);
    state.loraDropout = Number.isFinite(value) && value >= 0 && value < 1 ? value : 0;
    later();
  });
  $("recipe").addEventListener("change", () => openRecipe($("recipe").value));
  $("serving-run").addEventListener("click", planServing);
  $("checkpointing").addEventListener("change", () => {
    state.checkpointing = $("checkpointing").checked;
    refresh();
  });
  $("gpus").addEventListener("input", () => {
    state.gpus = Math.max(1, Number.parseInt($("gpus").value, 10) || 1);
    $("sharding").disabled = state.gpus === 1;
    $("offload").disabled = state.gpus === 1 || state.sharding === "ddp";
    later();
  });
  $("sharding").addEventListener("change", () => {
    state.sharding = $("sharding").value;
    $("offload").disabled = state.gpus === 1 || state.sharding === "ddp";
    refresh();
  });
  $("offload").addEventListener("change", () => {
    state.offload = $("offload").value;
    refresh();
  });
  for (const [id, key, least] of [["tp", "tp", 1], ["pp", "pp", 1], ["microbatches", "microbatches", 0]]) {
    $(id).addEventListener("input", () => {
      state[key] = Math.max(least, Number.parseInt($(id).value, 10) || least);
      later();
    });
  }
  $("kv-cache").addEventListener("change", () => {
    state.kvCache = $("kv-cache").value;
    refresh();
  });
  $("new-tokens").addEventListener("input", () => {
    state.newTokens = Math.max(1, Number.parseInt($("new-tokens").value, 10) || 1);
    later();
  });
  $("fit-mode").addEventListener("change", () => {
    state.fitMode = $("fit-mode").value;
    if (memory.inference) renderFits();
  });
  $("fits-table").addEventListener("click", (event) => {
    const button = event.target.closest("[data-max-batch]");
    if (button) findMaxBatch(button.dataset.maxBatch);
  });
  $("chart-group").addEventListener("change", () => summary && renderCharts());
  $("view-table").addEventListener("click", () => setView("table"));
  $("view-graph").addEventListener("click", () => setView("graph"));
  $("graph-expand").addEventListener("click", () => graph.expandAll());
  $("graph-collapse").addEventListener("click", () => graph.collapseBlocks());
  $("export-svg").addEventListener("click", () => {
    const text = graph.svgText();
    if (text) download(`${state.arch}-graph.svg`, text, "image/svg+xml");
  });
  $("export-png").addEventListener("click", async () => {
    const blob = await graph.pngBlob();
    if (blob) download(`${state.arch}-graph.png`, blob, "image/png");
  });
  $("layer-search").addEventListener("input", () => table.search($("layer-search").value));
  $("expand-all").addEventListener("click", () => table.expandAll());
  $("collapse-all").addEventListener("click", () => table.collapseAll());
  $("export-json").addEventListener("click", () => {
    if (summary) download(`${state.arch}-summary.json`, JSON.stringify(summary, null, 2), "application/json");
  });
  $("export-csv").addEventListener("click", async () => {
    try {
      const text = await post("/api/summary?format=csv", selection(), { accept: "text/csv" });
      download(`${state.arch}-layers.csv`, text, "text/csv");
    } catch (error) {
      showError(error);
    }
  });
}

function init() {
  readUrl();
  $("batch-size").value = String(state.batch);
  $("batch-range").value = String(Math.min(state.batch, 256));
  $("optimizer").value = state.optimizer;
  $("precision").value = state.precision;
  $("checkpointing").checked = state.checkpointing;
  $("tuning").value = state.tuning;
  $("lora-r").value = state.loraR;
  $("lora-targets").value = state.loraTargets;
  $("lora-dropout").value = String(state.loraDropout);
  loadRecipes();
  $("gpus").value = String(state.gpus);
  $("sharding").value = state.sharding;
  $("sharding").disabled = state.gpus === 1;
  $("offload").value = state.offload;
  $("offload").disabled = state.gpus === 1 || state.sharding === "ddp";
  $("tp").value = String(state.tp);
  $("pp").value = String(state.pp);
  $("microbatches").value = state.microbatches > 0 ? String(state.microbatches) : "";
  $("new-tokens").value = String(state.newTokens);
  bindControls();
  setView(state.view);
  selectArchitecture(state.arch, { keepConfig: true });
}

init();
