// Build page: compose a `sequential` model layer by layer; shapes update after every change.

import { architecture, debounce, download, get, post } from "./api.js";
import { showError as showBanner } from "./errors.js";
import { bytes, count, escapeHtml, flops, shape } from "./format.js";
import { readUrlState, writeUrlState } from "./urlstate.js";

const $ = (id) => document.getElementById(id);
const FAMILY = "sequential"; // the builder composes models of this family
let defaultSpec = null; // the family's default config, from the server
let types = new Map(); // type -> {arguments}
let spec = null;
let batch = 1;
let shapes = new Map(); // module path -> output shape
let lastOutput = null;
let generation = 0;

// ---------------------------------------------------------------- URL state

const URL_STATE = {
  spec: { param: "spec", type: "json", fallback: () => structuredClone(defaultSpec), keep: true },
  batch: { param: "b", type: "int", fallback: 1 },
};

function readUrl() {
  ({ spec, batch } = readUrlState(URL_STATE));
}

function writeUrl() {
  writeUrlState(URL_STATE, { spec, batch });
  // The explorer link follows every edit, typed values included.
  const explorer = new URLSearchParams({ a: FAMILY, c: JSON.stringify(spec) });
  if (batch !== 1) explorer.set("b", String(batch));
  $("open-explorer").href = `/?${explorer}`;
}

// ---------------------------------------------------------------- helpers

function listAt(path) {
  // path: [] for the top list, [3, "layers"] for the body of residual 3, ...
  let list = spec.layers;
  for (let i = 0; i < path.length; i += 2) list = list[path[i]][path[i + 1]];
  return list;
}

function modulePath(path, index) {
  // spec path -> module path: residual 3's body is "3.body", its shortcut "3.shortcut"
  const parts = [];
  for (let i = 0; i < path.length; i += 2) parts.push(String(path[i]), path[i + 1] === "layers" ? "body" : "shortcut");
  parts.push(String(index));
  return parts.join(".");
}

function parseValue(text) {
  const trimmed = text.trim();
  if (trimmed === "") return undefined;
  if (trimmed === "true" || trimmed === "false") return trimmed === "true";
  if (/^-?\d+$/.test(trimmed)) return Number.parseInt(trimmed, 10);
  if (/^-?\d*\.\d+(e-?\d+)?$/i.test(trimmed)) return Number.parseFloat(trimmed);
  if (/^-?\d+(\s*,\s*-?\d+)+$/.test(trimmed)) return trimmed.split(",").map((v) => Number.parseInt(v, 10));
  return trimmed;
}

function showValue(value) {
  if (value === undefined || value === null) return "";
  return Array.isArray(value) ? value.join(", ") : String(value);
}

function suggest(type, out) {
  const channels = out && out.length > 1 ? out[1] : 1;
  const last = out && out.length ? out[out.length - 1] : 1;
  const table = {
    Linear: { in_features: last, out_features: 64 },
    Conv1d: { in_channels: channels, out_channels: 16, kernel_size: 3, padding: 1 },
    Conv2d: { in_channels: channels, out_channels: 16, kernel_size: 3, padding: 1 },
    Conv3d: { in_channels: channels, out_channels: 16, kernel_size: 3, padding: 1 },
    ConvTranspose1d: { in_channels: channels, out_channels: 16, kernel_size: 2, stride: 2 },
    ConvTranspose2d: { in_channels: channels, out_channels: 16, kernel_size: 2, stride: 2 },
    BatchNorm1d: { num_features: channels },
    BatchNorm2d: { num_features: channels },
    BatchNorm3d: { num_features: channels },
    InstanceNorm1d: { num_features: channels },
    InstanceNorm2d: { num_features: channels },
    LayerNorm: { normalized_shape: [last] },
    GroupNorm: { num_groups: 1, num_channels: channels },
    Embedding: { num_embeddings: 1000, embedding_dim: 64 },
    MaxPool1d: { kernel_size: 2 },
    MaxPool2d: { kernel_size: 2 },
    MaxPool3d: { kernel_size: 2 },
    AvgPool1d: { kernel_size: 2 },
    AvgPool2d: { kernel_size: 2 },
    AvgPool3d: { kernel_size: 2 },
    AdaptiveAvgPool1d: { output_size: 1 },
    AdaptiveAvgPool2d: { output_size: 1 },
    AdaptiveMaxPool1d: { output_size: 1 },
    AdaptiveMaxPool2d: { output_size: 1 },
    Dropout: { p: 0.5 },
    LocalResponseNorm: { size: 5 },
    PixelShuffle: { upscale_factor: 2 },
    Upsample: { scale_factor: 2 },
    ZeroPad2d: { padding: 1 },
    Softmax: { dim: -1 },
    LogSoftmax: { dim: -1 },
    TransformerEncoderLayer: { d_model: last, nhead: 4 },
    Unflatten: { dim: 1, unflattened_size: [last] },
  };
  if (type === "residual") return { layers: [{ type: "ReLU" }] };
  return { ...(table[type] || {}) };
}

// The layer(s) to insert for a chosen type after an output of shape `before`. A Linear acts on the last axis
// only: after a (B, C, H, W) output the usual intent is a Flatten first, so one is added, and the page says so.
function placed(type, before) {
  $("build-note").textContent = "";
  if (type !== "Linear" || before.length <= 2) return [{ type, ...suggest(type, before) }];
  const features = before.slice(1).reduce((a, b) => a * b, 1);
  $("build-note").textContent = `Added a Flatten before the Linear: after an output of ${shape(before)}, a Linear would act on the last axis only (${before.at(-1)} features); flattened, it sees all ${features.toLocaleString("en-US")}. Remove the Flatten if the last axis is what you meant.`;
  return [{ type: "Flatten" }, { type: "Linear", in_features: features, out_features: 64 }];
}

// ---------------------------------------------------------------- rendering

function argsHtml(layer, where) {
  const info = types.get(layer.type);
  if (!info || !info.arguments.length) return "";
  const fields = info.arguments
    .map((arg) => {
      const value = layer[arg.name];
      const placeholder = arg.required ? "required" : showValue(arg.default) || "default";
      return `<label>${escapeHtml(arg.name)}<input type="text" data-arg="${escapeHtml(arg.name)}" data-where="${escapeHtml(where)}" value="${escapeHtml(showValue(value))}" placeholder="${escapeHtml(placeholder)}" ${arg.required ? "required" : ""}></label>`;
    })
    .join("");
  return `<div class="layer-args">${fields}</div>`;
}

function itemsHtml(list, path) {
  return list
    .map((layer, index) => {
      const where = JSON.stringify([...path, index]);
      const module = modulePath(path, index);
      const out = shapes.get(module);
      const typeOptions = [...types.keys()]
        .map((t) => `<option value="${t}" ${t === layer.type ? "selected" : ""}>${t}</option>`)
        .join("");
      const head = `<div class="layer-item-head">
          <span class="muted mono">${escapeHtml(module)}</span>
          <select aria-label="Type of layer ${escapeHtml(module)}" data-type-for='${where}'>${typeOptions}</select>
          <button type="button" class="icon-small" data-action="up" data-where='${where}' aria-label="Move ${escapeHtml(module)} up" ${index === 0 ? "disabled" : ""}>↑</button>
          <button type="button" class="icon-small" data-action="down" data-where='${where}' aria-label="Move ${escapeHtml(module)} down" ${index === list.length - 1 ? "disabled" : ""}>↓</button>
          <button type="button" class="icon-small" data-action="remove" data-where='${where}' aria-label="Remove ${escapeHtml(module)}">✕</button>
          <span class="shape-out" data-shape-for="${escapeHtml(module)}">${out ? `→ ${shape(out)}` : ""}</span>
        </div>`;
      if (layer.type === "residual") {
        const body = itemsHtml(layer.layers || [], [...path, index, "layers"]);
        return `<li class="layer-item" data-module="${escapeHtml(module)}">${head}
          <div class="residual-body"><span class="muted">f(x), added to x:</span>
            <ol class="layer-list">${body}</ol>
            <button type="button" class="button ghost" data-action="add-inside" data-where='${where}' style="margin-top: 6px">+ layer inside</button>
          </div></li>`;
      }
      return `<li class="layer-item" data-module="${escapeHtml(module)}">${head}${argsHtml(layer, where)}</li>`;
    })
    .join("");
}

function renderList() {
  $("layer-list").innerHTML = itemsHtml(spec.layers, []);
  $("spec-json").value = JSON.stringify(spec, null, 2);
  $("input-shape").value = spec.input_shape.join(", ");
  $("input-type").value = spec.input_type || "float";
  $("batch-size").value = String(batch);
}

function renderShapes(summary) {
  shapes = new Map(summary.layers.map((row) => [row.path, row.output_shape]));
  document.querySelectorAll("[data-shape-for]").forEach((el) => {
    const out = shapes.get(el.dataset.shapeFor);
    el.textContent = out ? `→ ${shape(out)}` : "";
  });
  document.querySelectorAll(".layer-item.invalid").forEach((el) => el.classList.remove("invalid"));
  const totals = summary.totals;
  $("tile-params").querySelector("[data-value]").textContent = count(totals.params);
  $("tile-flops").querySelector("[data-value]").textContent = flops(totals.flops);
  lastOutput = totals.output_shape;
  $("result-facts").innerHTML = `
    <dt>Input</dt><dd class="mono">${summary.input_shapes.map(shape).join(", ")}</dd>
    <dt>Output</dt><dd class="mono">${shape(totals.output_shape)}</dd>
    <dt>Weights</dt><dd>${bytes(totals.param_bytes)}</dd>
    <dt>Layer outputs</dt><dd>${bytes(totals.activation_bytes)}</dd>`;
  $("layer-total").textContent = `(${summary.layers.length - 1} modules)`;
}

function moduleOf(body) {
  if (body.layer) return body.layer;
  if (body.field && body.field.startsWith("config.layers.")) {
    // config.layers.3.layers.0 -> module 3.body.0
    const parts = body.field.replace("config.layers.", "").split(".");
    return parts.map((p) => (p === "layers" ? "body" : p)).join(".");
  }
  return null;
}

function showError(error) {
  document.querySelectorAll(".layer-item.invalid").forEach((el) => el.classList.remove("invalid"));
  const body = showBanner($("error"), error, { title: "The shapes do not fit" });
  const module = moduleOf(body);
  if (module) document.querySelector(`.layer-item[data-module="${CSS.escape(module)}"]`)?.classList.add("invalid");
}

// ---------------------------------------------------------------- updating

async function update() {
  writeUrl();
  renderList();
  const mine = ++generation;
  try {
    const summary = await post(
      "/api/summary",
      { architecture: FAMILY, config: spec, input: { batch_size: batch } },
      { busyText: "Checking shapes…" },
    );
    if (mine !== generation) return;
    $("error").hidden = true;
    renderShapes(summary);
    $("result").classList.remove("stale");
  } catch (error) {
    if (mine !== generation) return;
    // The figures beside the banner are the last model that fitted, not this one: dim them, clear the shapes.
    $("result").classList.add("stale");
    document.querySelectorAll("[data-shape-for]").forEach((el) => (el.textContent = ""));
    showError(error);
  }
}

function locate(where) {
  const path = JSON.parse(where);
  const index = path.pop();
  return { list: listAt(path), index, path };
}

function bind() {
  $("layer-list").addEventListener("click", (event) => {
    const button = event.target.closest("[data-action]");
    if (!button) return;
    const { list, index } = locate(button.dataset.where);
    const action = button.dataset.action;
    if (action === "remove") list.splice(index, 1);
    else if (action === "up" && index > 0) [list[index - 1], list[index]] = [list[index], list[index - 1]];
    else if (action === "down" && index < list.length - 1) [list[index + 1], list[index]] = [list[index], list[index + 1]];
    else if (action === "add-inside") list[index].layers.push({ type: "ReLU" });
    update();
  });
  $("layer-list").addEventListener("change", (event) => {
    const select = event.target.closest("[data-type-for]");
    if (!select) return;
    const { list, index, path } = locate(select.dataset.typeFor);
    const before = (index > 0 ? shapes.get(modulePath(path, index - 1)) : null) || [batch, ...spec.input_shape];
    list.splice(index, 1, ...placed(select.value, before));
    update();
  });
  $("layer-list").addEventListener("input", (event) => {
    const input = event.target.closest("[data-arg]");
    if (!input) return;
    const { list, index } = locate(input.dataset.where);
    const value = parseValue(input.value);
    if (value === undefined) delete list[index][input.dataset.arg];
    else list[index][input.dataset.arg] = value;
    $("spec-json").value = JSON.stringify(spec, null, 2);
    writeUrl();
    laterQuiet();
  });
  $("add-layer").addEventListener("click", () => {
    spec.layers.push(...placed($("new-type").value, lastOutput || [batch, ...spec.input_shape]));
    update();
  });
  $("clear-layers").addEventListener("click", () => {
    spec.layers = [];
    update();
  });
  $("input-shape").addEventListener("input", () => {
    const dims = $("input-shape").value.split(/[\s,x×]+/).filter(Boolean).map(Number);
    if (dims.length && dims.every((d) => Number.isInteger(d) && d > 0)) {
      spec.input_shape = dims;
      laterQuiet();
    }
  });
  $("input-type").addEventListener("change", () => {
    spec.input_type = $("input-type").value;
    update();
  });
  $("batch-size").addEventListener("input", () => {
    batch = Number.parseInt($("batch-size").value, 10) || 1;
    laterQuiet();
  });
  $("export-spec").addEventListener("click", () => download("layerscope-model.json", JSON.stringify(spec, null, 2), "application/json"));
  $("import-file").addEventListener("change", async () => {
    const file = $("import-file").files[0];
    if (file) applySpec(await file.text());
    $("import-file").value = "";
  });
  $("apply-json").addEventListener("click", () => applySpec($("spec-json").value));
}

// Argument edits re-check shapes without re-rendering the list (keeps focus in the input).
const laterQuiet = debounce(async () => {
  writeUrl();
  const mine = ++generation;
  try {
    const summary = await post("/api/summary", { architecture: FAMILY, config: spec, input: { batch_size: batch } }, { busyText: "Checking shapes…" });
    if (mine !== generation) return;
    $("error").hidden = true;
    renderShapes(summary);
    $("result").classList.remove("stale");
  } catch (error) {
    if (mine !== generation) return;
    // The figures beside the banner are the last model that fitted, not this one: dim them, clear the shapes.
    $("result").classList.add("stale");
    document.querySelectorAll("[data-shape-for]").forEach((el) => (el.textContent = ""));
    showError(error);
  }
}, 300);

function applySpec(text) {
  try {
    const parsed = JSON.parse(text);
    if (!Array.isArray(parsed.layers)) throw new Error("the spec needs a 'layers' list");
    spec = {
      input_shape: parsed.input_shape || defaultSpec.input_shape,
      input_type: parsed.input_type || defaultSpec.input_type,
      layers: parsed.layers,
    };
    update();
  } catch (error) {
    showBanner($("error"), error, { title: "That JSON cannot be used" });
  }
}

async function init() {
  defaultSpec = (await architecture(FAMILY)).defaults;
  const list = await get("/api/layer-types");
  types = new Map(list.map((t) => [t.type, t]));
  $("new-type").innerHTML = [...types.keys()]
    .map((t) => `<option value="${t}" ${t === "Linear" ? "selected" : ""}>${t}</option>`)
    .join("");
  readUrl();
  bind();
  update();
}

init();

