// Compare page: two to eight selections side by side. State lives in the URL (?s=[...]).

import { architecture, debounce, download, get, post } from "./api.js";
import { draw, palette } from "./charts.js";
import { clearError, showError } from "./errors.js";
import { bytes, count, escapeHtml, flops } from "./format.js";
import { readUrlState, writeUrlState } from "./urlstate.js";

const $ = (id) => document.getElementById(id);
const DEFAULT = [
  { a: "alexnet", p: "original", c: {}, b: 32 },
  { a: "resnet", p: "resnet50", c: {}, b: 32 },
];
let names = [];
let selections = [];
let report = null;
const choices = { mode: "train", optimizer: "adam", precision: "", newTokens: 32 };

const URL_STATE = {
  selections: { param: "s", type: "json", fallback: () => structuredClone(DEFAULT), keep: true },
  mode: { param: "m", fallback: "train" },
  optimizer: { param: "o", fallback: "adam" },
  precision: { param: "p", fallback: "" },
  newTokens: { param: "n", type: "int", fallback: 32 },
};

function readUrl() {
  const read = readUrlState(URL_STATE);
  ({ mode: choices.mode, optimizer: choices.optimizer, precision: choices.precision, newTokens: choices.newTokens } = read);
  selections = Array.isArray(read.selections) ? read.selections.slice(0, 8) : structuredClone(DEFAULT);
  while (selections.length < 2) selections.push({ a: "mlp", p: "", c: {}, b: 1 });
}

const writeUrl = () => writeUrlState(URL_STATE, { selections, ...choices });

async function rowHtml(selection, index) {
  const info = await architecture(selection.a);
  const archOptions = names.map((n) => `<option value="${n}" ${n === selection.a ? "selected" : ""}>${n}</option>`).join("");
  const presetOptions = [`<option value="">defaults</option>`]
    .concat(info.presets.map((p) => `<option value="${escapeHtml(p.name)}" ${p.name === selection.p ? "selected" : ""}>${escapeHtml(p.title)}</option>`))
    .join("");
  const overrides = Object.keys(selection.c || {}).length ? escapeHtml(JSON.stringify(selection.c)) : "";
  return `<div class="selection-row" data-index="${index}">
    <span class="index">${index + 1}</span>
    <select aria-label="Architecture ${index + 1}" data-key="a">${archOptions}</select>
    <select aria-label="Preset ${index + 1}" data-key="p">${presetOptions}</select>
    <input type="text" aria-label="Config overrides ${index + 1} (JSON)" data-key="c" placeholder='config overrides, e.g. {"num_classes": 10}' value="${overrides}">
    <input type="number" aria-label="Batch size ${index + 1}" data-key="b" min="1" max="65536" value="${selection.b}">
    <button type="button" class="icon-small" data-remove="${index}" aria-label="Remove selection ${index + 1}" ${selections.length <= 2 ? "disabled" : ""}>✕</button>
  </div>`;
}

async function renderRows() {
  const rows = await Promise.all(selections.map((s, i) => rowHtml(s, i)));
  $("selections").innerHTML = rows.join("");
  $("add-selection").disabled = selections.length >= 8;
}

function body() {
  return {
    selections: selections.map((s) => {
      let config = { ...(s.c || {}) };
      if (s.p) config = { preset: s.p, ...config };
      return { architecture: s.a, config, input: { batch_size: Number(s.b) || 1 } };
    }),
    mode: choices.mode,
    optimizer: choices.optimizer,
    new_tokens: choices.newTokens,
    ...(choices.precision ? { precision: choices.precision } : {}),
  };
}

async function compare() {
  writeUrl();
  try {
    report = await post("/api/compare", body(), { busyText: "Comparing…" });
    clearError($("error"));
    render();
  } catch (error) {
    showError($("error"), error, { title: "Comparison failed" });
  }
}

function render() {
  const entries = report.entries;
  const labels = entries.map((e, i) => `${i + 1}. ${e.label}`);
  const optimizer = $("compare-optimizer").selectedOptions[0].textContent;
  const generate = choices.mode === "generate";
  const head = `<thead><tr><th>Selection</th><th>Parameters</th><th>FLOPs</th><th>MACs</th><th>Weights</th><th>Inference peak</th><th>Training peak (${escapeHtml(optimizer)})</th>${generate ? "<th>Generation peak</th><th>KV cache</th>" : ""}<th>Modules</th></tr></thead>`;
  const rows = entries
    .map((e, i) => `<tr><td>${escapeHtml(labels[i])} <span class="muted">batch ${e.request.input.batch_size}, ${escapeHtml(e.precision)}</span></td>
      <td>${count(e.totals.params)}</td><td>${flops(e.totals.flops)}</td><td>${count(e.totals.macs)}</td>
      <td>${bytes(e.totals.param_bytes)}</td><td>${bytes(e.inference_peak_bytes)}</td><td>${bytes(e.training_peak_bytes)}</td>
      ${generate ? `<td>${bytes(e.step_peak_bytes)}</td><td>${bytes(e.kv_cache_bytes || 0)}</td>` : ""}
      <td>${count(e.layers)}</td></tr>`)
    .join("");
  $("compare-table").innerHTML = head + `<tbody>${rows}</tbody>`;
  const bar = (id, y, title, color, unit) =>
    draw($(id), [{ type: "bar", x: labels, y, marker: { color }, hovertemplate: `%{x}<br>%{y:,}${unit}<extra></extra>` }], {
      yaxis: { title },
      xaxis: { title: "selection" },
    });
  bar("chart-compare-params", entries.map((e) => e.totals.params), "parameters (count)", palette[0], " parameters");
  bar("chart-compare-flops", entries.map((e) => e.totals.flops / 1e9), "GFLOPs per forward", palette[1], " GFLOPs");
  draw($("chart-compare-memory"), [
    { type: "bar", name: "inference", x: labels, y: entries.map((e) => e.inference_peak_bytes / 2 ** 20), marker: { color: palette[2] } },
    { type: "bar", name: `training (${optimizer})`, x: labels, y: entries.map((e) => e.training_peak_bytes / 2 ** 20), marker: { color: palette[3] } },
    ...(generate ? [{ type: "bar", name: "generation", x: labels, y: entries.map((e) => e.step_peak_bytes / 2 ** 20), marker: { color: palette[4] } }] : []),
  ], { barmode: "group", yaxis: { title: "peak memory (MiB)" }, xaxis: { title: "selection" } });
  const parts = Object.keys(entries[0].training_breakdown);
  draw($("chart-compare-breakdown"), parts.map((part, i) => ({
    type: "bar",
    name: part.replace("_", " "),
    x: labels,
    y: entries.map((e) => e.training_breakdown[part] / 2 ** 20),
    marker: { color: palette[i % palette.length] },
  })), { barmode: "stack", yaxis: { title: "training step, memory at the peak (MiB)" }, xaxis: { title: "selection" } });
}

const later = debounce(compare, 500);

function bindChoices() {
  $("compare-mode").value = choices.mode;
  $("compare-optimizer").value = choices.optimizer;
  $("compare-precision").value = choices.precision;
  $("compare-new-tokens").value = String(choices.newTokens);
  $("compare-new-tokens").disabled = choices.mode !== "generate";
  for (const [id, key, parse] of [
    ["compare-mode", "mode", String],
    ["compare-optimizer", "optimizer", String],
    ["compare-precision", "precision", String],
    ["compare-new-tokens", "newTokens", (v) => Number.parseInt(v, 10) || 32],
  ]) {
    $(id).addEventListener("change", () => {
      choices[key] = parse($(id).value);
      $("compare-new-tokens").disabled = choices.mode !== "generate";
      later();
    });
  }
}

function bind() {
  bindChoices();
  $("selections").addEventListener("change", async (event) => {
    const row = event.target.closest("[data-index]");
    if (!row) return;
    const selection = selections[Number(row.dataset.index)];
    const key = event.target.dataset.key;
    if (key === "a") {
      selection.a = event.target.value;
      selection.p = "";
      selection.c = {};
      await renderRows();
    } else if (key === "p") selection.p = event.target.value;
    else if (key === "b") selection.b = Number.parseInt(event.target.value, 10) || 1;
    else if (key === "c") {
      try {
        selection.c = event.target.value.trim() ? JSON.parse(event.target.value) : {};
        event.target.removeAttribute("aria-invalid");
      } catch {
        event.target.setAttribute("aria-invalid", "true");
        return;
      }
    }
    later();
  });
  $("selections").addEventListener("click", async (event) => {
    const remove = event.target.closest("[data-remove]");
    if (!remove || selections.length <= 2) return;
    selections.splice(Number(remove.dataset.remove), 1);
    await renderRows();
    later();
  });
  $("add-selection").addEventListener("click", async () => {
    if (selections.length >= 8) return;
    selections.push({ a: "resnet", p: "", c: {}, b: 32 });
    await renderRows();
    later();
  });
  $("run-compare").addEventListener("click", compare);
  $("export-compare").addEventListener("click", async () => {
    const text = await post("/api/compare?format=csv", body(), { accept: "text/csv" });
    download("layerscope-compare.csv", text, "text/csv");
  });
}

async function init() {
  names = (await get("/api/architectures")).map((a) => a.name);
  readUrl();
  await renderRows();
  bind();
  compare();
}

init();
