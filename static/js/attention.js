// Attention page: tokenize a text, run GPT or the Transformer, and look at every head's weights.

import { architecture, debounce, familyFacts, get, post } from "./api.js";
import { draw } from "./charts.js";
import { clearError, showError } from "./errors.js";
import { escapeHtml } from "./format.js";
import { readUrlState, writeUrlState } from "./urlstate.js";

const $ = (id) => document.getElementById(id);
const state = { arch: "", preset: "", weights: "", layer: 0, head: 0, text: "" };
let report = null;
let sources = []; // weights for this architecture, with the config bundled ones need
let generation = 0;

function livePreset(arch) {
  return familyFacts(arch)?.live?.preset || "";
}

const URL_STATE = {
  arch: { param: "a", fallback: () => $("at-arch").options[0].value },
  preset: { param: "p", fallback: (s) => livePreset(s.arch), keep: true },
  weights: { param: "w", fallback: "" }, // empty: the bundled weights when they fit, else random
  text: { param: "t", fallback: () => $("at-text").value, keep: true },
  layer: { param: "l", type: "int", fallback: 0 },
  head: { param: "h", type: "int", fallback: 0 },
};

const readUrl = () => readUrlState(URL_STATE, state);
const writeUrl = () => writeUrlState(URL_STATE, state);

async function loadPresets() {
  const info = await architecture(state.arch);
  $("at-arch").value = state.arch;
  $("at-preset").innerHTML = info.presets.map((p) => `<option value="${escapeHtml(p.name)}">${escapeHtml(p.title)}</option>`).join("");
  if (!info.presets.some((p) => p.name === state.preset)) state.preset = livePreset(state.arch) || info.presets[0].name;
  $("at-preset").value = state.preset;
  sources = await get(`/api/weights?architecture=${encodeURIComponent(state.arch)}`);
  $("at-weights-source").innerHTML = sources.map((s) => `<option value="${escapeHtml(s.id)}">${escapeHtml(s.label)}</option>`).join("");
  syncWeights();
}

function fits(source) {
  // Bundled weights fit the one preset they were trained as.
  return !source.config || source.config.preset === state.preset;
}

function syncWeights() {
  for (const option of $("at-weights-source").options) option.disabled = !fits(sources.find((s) => s.id === option.value));
  const chosen = sources.find((s) => s.id === state.weights);
  if (!chosen || !fits(chosen)) {
    const preferred = sources.find((s) => s.facts && s.facts.live_default && fits(s));
    state.weights = preferred ? preferred.id : "random";
  }
  $("at-weights-source").value = state.weights;
}

async function run() {
  writeUrl();
  const mine = ++generation;
  try {
    const result = await post(
      "/api/attention",
      { architecture: state.arch, config: { preset: state.preset }, text: state.text, weights: state.weights },
      { busyText: "Running the model…" },
    );
    if (mine !== generation) return;
    report = result;
    clearError($("error"));
    render();
  } catch (error) {
    if (mine !== generation) return;
    showError($("error"), error, { title: "Attention failed", retry: run, fieldFor: (body) => (body.field === "text" ? $("at-text") : null) });
  }
}

function visible(token) {
  return token.replaceAll(" ", "␣").replaceAll("\n", "⏎");
}

function render() {
  $("at-tokens").innerHTML = report.tokens.map((t, i) => `<span class="token" title="id ${report.token_ids[i]}">${escapeHtml(visible(t))}</span>`).join("");
  $("at-count").textContent = `(${report.tokens.length} tokens, vocabulary of ${report.vocab_size}${report.truncated ? ", text cut to the first 64" : ""})`;
  $("at-merges").innerHTML = report.merges
    .map((m) => `<li>${escapeHtml(visible(m.left))} + ${escapeHtml(visible(m.right))} → ${escapeHtml(visible(m.merged))} <span class="muted">(merge rank ${m.rank + 1}${m.count > 1 ? `, fired ×${m.count}` : ""})</span></li>`)
    .join("") || `<li class="muted">none: every token is a single byte</li>`;
  $("at-weights").textContent = report.weights;
  $("at-layer").innerHTML = report.attention.map((a, i) => `<option value="${i}">${escapeHtml(a.path)} (${a.kind})</option>`).join("");
  state.layer = Math.min(state.layer, report.attention.length - 1);
  $("at-layer").value = String(state.layer);
  renderLayer();
  const pe = report.positional_encoding;
  draw($("at-pe"), [
    { type: "heatmap", z: pe, colorscale: "RdBu", zmin: -1, zmax: 1, hovertemplate: "position %{y}, dimension %{x}: %{z:.3f}<extra></extra>" },
  ], { xaxis: { title: "dimension i" }, yaxis: { title: "token position", autorange: "reversed" }, margin: { l: 56, r: 16, t: 8, b: 48 } });
}

function labels(kind) {
  const tokens = report.tokens.map((t, i) => `${i}:${visible(t)}`);
  return { x: tokens, y: tokens, kind };
}

function renderLayer() {
  const layer = report.attention[state.layer];
  $("at-head").innerHTML = layer.heads.map((_, i) => `<option value="${i}">${i}</option>`).join("");
  state.head = Math.min(state.head, layer.heads.length - 1);
  $("at-head").value = String(state.head);
  renderHead();
  $("at-heads").innerHTML = layer.heads
    .map((_, i) => `<button type="button" class="head-thumb${i === state.head ? " selected" : ""}" data-head="${i}" aria-label="Head ${i}"><canvas width="${layer.heads[i].length}" height="${layer.heads[i].length}"></canvas>head ${i}</button>`)
    .join("");
  $("at-heads").querySelectorAll("canvas").forEach((canvas, i) => paint(canvas, layer.heads[i]));
}

function paint(canvas, matrix) {
  const context = canvas.getContext("2d");
  const rows = matrix.length;
  const cols = matrix[0].length;
  canvas.width = cols;
  canvas.height = rows;
  const image = context.createImageData(cols, rows);
  for (let r = 0; r < rows; r += 1) {
    const top = Math.max(...matrix[r]) || 1;
    for (let c = 0; c < cols; c += 1) {
      const v = matrix[r][c] / top;
      const o = 4 * (r * cols + c);
      image.data[o] = 255 - 176 * v;
      image.data[o + 1] = 255 - 148 * v;
      image.data[o + 2] = 255 - 18 * v;
      image.data[o + 3] = 255;
    }
  }
  context.putImageData(image, 0, 0);
}

function renderHead() {
  const layer = report.attention[state.layer];
  const matrix = layer.heads[state.head];
  const axes = labels(layer.kind);
  $("at-heatmap-title").textContent = `${layer.path}, head ${state.head} (${layer.kind === "causal" ? "causal: the upper triangle is masked" : layer.kind === "cross" ? "cross: decoder queries over encoder keys" : "self-attention"})`;
  draw($("at-heatmap"), [
    {
      type: "heatmap",
      z: matrix,
      x: axes.x,
      y: axes.y,
      colorscale: "Blues",
      reversescale: true,
      zmin: 0,
      hovertemplate: "query %{y}<br>key %{x}<br>weight %{z:.4f}<extra></extra>",
    },
  ], {
    xaxis: { title: "key token", tickangle: -60, tickfont: { size: 10 }, dtick: 1 },
    yaxis: { title: "query token", autorange: "reversed", tickfont: { size: 10 }, dtick: 1 },
    margin: { l: 90, r: 16, t: 8, b: 90 },
  });
  writeUrl();
}

function bind() {
  const later = debounce(() => {
    state.text = $("at-text").value;
    run();
  }, 500);
  $("at-text").addEventListener("input", later);
  $("at-arch").addEventListener("change", async () => {
    state.arch = $("at-arch").value;
    state.preset = livePreset(state.arch);
    state.weights = "";
    state.layer = 0;
    state.head = 0;
    await loadPresets();
    run();
  });
  $("at-preset").addEventListener("change", () => {
    state.preset = $("at-preset").value;
    syncWeights();
    run();
  });
  $("at-weights-source").addEventListener("change", () => {
    state.weights = $("at-weights-source").value;
    run();
  });
  $("at-layer").addEventListener("change", () => {
    state.layer = Number($("at-layer").value);
    renderLayer();
  });
  $("at-head").addEventListener("change", () => {
    state.head = Number($("at-head").value);
    renderLayer();
  });
  $("at-heads").addEventListener("click", (event) => {
    const button = event.target.closest("[data-head]");
    if (!button) return;
    state.head = Number(button.dataset.head);
    renderLayer();
  });
}

async function init() {
  readUrl();
  $("at-text").value = state.text;
  await loadPresets();
  bind();
  run();
}

init();
