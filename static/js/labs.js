// Labs page: the course's worked examples on the student's numbers. State lives in the URL (?lab=...&v={...}).

import { debounce, get, post } from "./api.js";
import { draw } from "./charts.js";
import { clearError, showError } from "./errors.js";
import { escapeHtml } from "./format.js";
import { SchemaForm } from "./form.js";
import { readUrlState, writeUrlState } from "./urlstate.js";

const $ = (id) => document.getElementById(id);
let labs = [];
let lab = null;
let values = {};
let result = null;

const form = new SchemaForm($("lab-form"), (all) => {
  values = all;
  later();
});

const URL_STATE = {
  lab: { param: "lab", fallback: "pooling", keep: true },
  values: { param: "v", type: "json", fallback: {} }, // only the values that differ from the lab's example
};

function readUrl() {
  const read = readUrlState(URL_STATE);
  values = read.values && typeof read.values === "object" ? read.values : {};
  return read.lab;
}

function writeUrl() {
  const changed = Object.fromEntries(Object.entries(values).filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(lab.defaults[k])));
  writeUrlState(URL_STATE, { lab: lab.name, values: changed });
}

function isMatrix(value) {
  return Array.isArray(value) && value.length > 0 && value.every((row) => Array.isArray(row) && row.every((v) => typeof v === "number"));
}

function number(v) {
  if (typeof v !== "number") return escapeHtml(String(v));
  return Number.isInteger(v) ? v.toLocaleString("en-US") : Number(v.toPrecision(6)).toString();
}

function matrixHtml(rows, { id = "", cells = null } = {}) {
  const marked = new Set((cells || []).map(([r, c]) => `${r},${c}`));
  const body = rows
    .map((row, r) => `<tr>${row.map((v, c) => `<td data-cell="${r},${c}" class="${marked.has(`${r},${c}`) ? "hit" : ""}">${number(v)}</td>`).join("")}</tr>`)
    .join("");
  return `<table class="matrix" ${id ? `id="${id}"` : ""}><tbody>${body}</tbody></table>`;
}

function valueHtml(value) {
  if (value === null || value === undefined) return "";
  // symbol pairs (BPE merges): "e s", in order
  if (Array.isArray(value) && value.length && value.every((v) => Array.isArray(v) && v.every((x) => typeof x === "string"))) {
    return `<ol class="lab-pairs">${value.map((v) => `<li><code>${escapeHtml(v.join(" "))}</code></li>`).join("")}</ol>`;
  }
  if (isMatrix(value)) return matrixHtml(value);
  if (Array.isArray(value) && value.every(isMatrix)) return value.map((m, i) => `<div class="head-block"><span class="muted">head ${i}</span>${matrixHtml(m)}</div>`).join("");
  if (Array.isArray(value)) return `<code>(${value.map((v) => (typeof v === "object" ? escapeHtml(JSON.stringify(v)) : number(v))).join(", ")})</code>`;
  if (typeof value === "object") return `<code>${escapeHtml(JSON.stringify(value))}</code>`;
  return `<strong>${number(value)}</strong>`;
}

const SKIP = new Set(["lab", "title", "section", "inputs", "steps", "errata", "checks", "notes", "windows", "history", "weights", "running", "table", "m_k", "layers"]);

function renderOutputs() {
  const parts = [];
  const windowed = Array.isArray(result.windows);
  if (windowed) {
    parts.push(`<div class="lab-grid"><div><h3 class="detail-subtitle">Input (hover an output cell: its window lights up)</h3>${matrixHtml(result.inputs.matrix, { id: "lab-input" })}</div>
      <div><h3 class="detail-subtitle">Output</h3>${matrixHtml(result.output, { id: "lab-output" })}</div></div>
      <p class="mono" id="lab-window">${escapeHtml(result.windows[0] ? result.windows[0].arithmetic : "")}</p>`);
  }
  for (const [key, value] of Object.entries(result)) {
    if (SKIP.has(key) || (windowed && key === "output")) continue;
    parts.push(`<div class="lab-output"><span class="tile-label">${escapeHtml(key.replaceAll("_", " "))}</span>${valueHtml(value)}</div>`);
  }
  if (Array.isArray(result.weights) && result.weights[0]?.chain) {
    const rows = result.weights.map((w) => `<tr><td>${escapeHtml(w.weight)}</td><td class="mono">${escapeHtml(w.chain)}</td><td>${number(w.gradient)}</td><td>${number(w.autograd)}</td><td>${number(w.updated)}</td></tr>`).join("");
    parts.push(`<table class="compare-table lab-table"><thead><tr><th>Weight</th><th>Chain rule</th><th>Gradient</th><th>autograd</th><th>After one SGD step</th></tr></thead><tbody>${rows}</tbody></table>`);
  }
  if (result.history) {
    const rows = result.history.map((h) => `<tr><td>${h.step}</td><td>${escapeHtml(h.merge.join(" + "))} → <strong>${escapeHtml(h.merge.join(""))}</strong></td><td>${h.count}</td><td>${escapeHtml(h.top_pairs.map((p) => `${p.pair.join("")}:${p.count}`).join("  "))}</td><td class="mono">${escapeHtml(Object.keys(h.corpus).join(" | "))}</td></tr>`).join("");
    parts.push(`<table class="compare-table lab-table"><thead><tr><th>Step</th><th>Merge</th><th>Count</th><th>Most frequent pairs</th><th>Words after</th></tr></thead><tbody>${rows}</tbody></table>`);
  }
  if (result.running) {
    const rows = result.running.map((r) => `<tr><td>${r.step}</td><td>${valueHtml(r.running_mean)}</td><td>${valueHtml(r.running_var)}</td></tr>`).join("");
    parts.push(`<table class="compare-table lab-table"><thead><tr><th>Step</th><th>running_mean</th><th>running_var</th></tr></thead><tbody>${rows}</tbody></table>`);
  }
  if (Array.isArray(result.layers) && result.layers[0]?.formula) {
    const rows = result.layers.map((l) => `<tr><td>${l.layer}</td><td>${l.shape.join(" x ")}</td><td>${number(l.weights)}</td><td>${number(l.biases)}</td><td class="mono">${escapeHtml(l.formula)}</td></tr>`).join("");
    parts.push(`<table class="compare-table lab-table"><thead><tr><th>Layer</th><th>W</th><th>Weights</th><th>Biases</th><th>Formula</th></tr></thead><tbody>${rows}</tbody></table>`);
  }
  $("lab-outputs").innerHTML = parts.join("");
  bindWindows();
}

function bindWindows() {
  const output = $("lab-output");
  if (!output || !result.windows) return;
  output.addEventListener("mouseover", (event) => {
    const cell = event.target.closest("[data-cell]");
    if (!cell) return;
    const [i, j] = cell.dataset.cell.split(",").map(Number);
    const window = result.windows.find((w) => w.output[0] === i && w.output[1] === j);
    if (!window) return;
    $("lab-window").textContent = window.arithmetic;
    document.querySelectorAll("#lab-input td").forEach((td) => td.classList.remove("hit"));
    for (const [r, c] of window.cells || []) {
      const td = document.querySelector(`#lab-input [data-cell="${r},${c}"]`);
      if (td) td.classList.add("hit");
    }
  });
}

function renderChart() {
  // Attention weights (heads of query x key) and the positional-encoding table are drawn as heatmaps.
  const attention = Array.isArray(result.weights) && isMatrix(result.weights[0]);
  const heat = attention ? result.weights[0] : isMatrix(result.table) ? result.table : null;
  $("lab-chart-panel").hidden = !heat;
  if (!heat) return;
  $("lab-chart-title").textContent = attention ? "Attention weights, head 0" : "PE(pos, i)";
  draw($("lab-chart"), [{ type: "heatmap", z: heat, colorscale: "Viridis", colorbar: { title: { text: attention ? "weight" : "value" } }, hovertemplate: "row %{y}, column %{x}: %{z:.4f}<extra></extra>" }], {
    xaxis: { title: { text: attention ? "key position" : "dimension i" } },
    yaxis: { title: { text: attention ? "query position" : "position" }, autorange: "reversed" },
  });
}

function render() {
  $("lab-title").innerHTML = `${escapeHtml(result.title)} <span class="muted">course notes §${escapeHtml(result.section)}</span>`;
  // Whose numbers these are: the notes' own example, one of Layerscope's, or the student's.
  $("lab-example").textContent =
    result.example === "yours" ? "Your numbers." : `${result.example === "notes" ? "The notes' own example" : "Layerscope's example (the notes give none)"}: ${lab.example_source}.`;
  renderOutputs();
  $("lab-steps").innerHTML = result.steps
    .map((s) => `<li><strong>${escapeHtml(s.label)}</strong>: <span class="mono">${escapeHtml(s.formula)}</span>${s.value === null || s.value === undefined ? "" : ` = ${valueHtml(s.value)}`}</li>`)
    .join("");
  $("lab-checks").innerHTML = [...result.checks, ...result.notes].map((c) => `<li>${escapeHtml(c)}</li>`).join("");
  $("lab-errata").innerHTML = result.errata
    .map((e) => `<div class="erratum ${e.convention ? "convention" : ""}"><strong>Course notes, §${escapeHtml(e.section)}</strong>: ${e.convention ? "another convention" : "the notes say"} “${escapeHtml(e.notes_say)}”; ${e.convention ? "PyTorch" : "correct"}: ${escapeHtml(e.correct)}</div>`)
    .join("");
  renderChart();
}

async function compute() {
  writeUrl();
  try {
    result = await post(`/api/labs/${lab.name}`, values, { busyText: "Computing…" });
    clearError($("error"));
    render();
  } catch (error) {
    showError($("error"), error, {
      title: "These inputs do not work",
      fieldFor: (body) => (body.field ? document.querySelector(`#lab-form [name="${CSS.escape(body.field.split(".")[0])}"]`) : null),
    });
  }
}

const later = debounce(compute, 400);

function select(name, keep = false) {
  lab = labs.find((l) => l.name === name) || labs[0];
  if (!keep) values = {};
  values = { ...lab.defaults, ...values };
  document.querySelectorAll(".lab-link").forEach((a) => a.classList.toggle("active", a.dataset.lab === lab.name));
  document.querySelectorAll(".lab-link").forEach((a) => (a.getAttribute("aria-current") === "page" ? a.removeAttribute("aria-current") : null));
  document.querySelector(`.lab-link[data-lab="${lab.name}"]`)?.setAttribute("aria-current", "page");
  $("lab-inputs-title").textContent = `Inputs: ${lab.title}`;
  form.render(lab.input_schema);
  form.setValues(values);
  compute();
}

async function init() {
  labs = await get("/api/labs");
  const name = readUrl();
  $("lab-list").addEventListener("click", (event) => {
    const link = event.target.closest("[data-lab]");
    if (!link) return;
    event.preventDefault();
    select(link.dataset.lab);
  });
  $("lab-reset").addEventListener("click", () => select(lab.name));
  select(name, true);
}

init();
