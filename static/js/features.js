// Feature maps page: a real forward pass on an image; each layer's channels, and one channel up close.

import { architecture, debounce, get, request } from "./api.js";
import { draw, palette } from "./charts.js";
import { clearError, showError as showBanner } from "./errors.js";
import { escapeHtml, shape } from "./format.js";
import { readUrlState, writeUrlState } from "./urlstate.js";

const $ = (id) => document.getElementById(id);
// Four decimals, and no "-0.0000" for a value that rounds to zero.
const fixed = (value) => (Math.abs(value) < 5e-5 ? 0 : value).toFixed(4);
const state = { arch: "alexnet", preset: "", weights: "", sample: "cat", input: "sample" };
let info = null;
let sources = []; // the weights this architecture can use, with their facts
let drawable = null; // bundled weights that accept a drawn digit: {architecture, config, ...}
let lastReport = null;
let uploadedImage = null; // File
let weightsFile = null; // File
let generation = 0;

// ---------------------------------------------------------------- URL state

const DEFAULTS = { arch: state.arch, sample: state.sample };
const URL_STATE = {
  arch: { param: "a", fallback: DEFAULTS.arch, keep: true },
  preset: { param: "p", fallback: "" },
  weights: { param: "w", fallback: "", keep: true }, // empty: the architecture's default weights, once known
  sample: { param: "s", fallback: DEFAULTS.sample },
};

const readUrl = () => readUrlState(URL_STATE, state);
// The sample is in the link only while a sample is the input.
const writeUrl = () => writeUrlState(URL_STATE, { ...state, sample: state.input === "sample" ? state.sample : "" });

// ---------------------------------------------------------------- requests

function chosenSource() {
  return sources.find((s) => s.id === state.weights) || null;
}

function config() {
  const source = chosenSource();
  if (source && source.config) return source.config; // bundled or torchvision weights fit one config
  return state.preset ? { preset: state.preset } : {};
}

async function drawingBlob() {
  return new Promise((resolve) => $("draw-canvas").toBlob(resolve, "image/png"));
}

async function send(extra = {}) {
  const needsForm = state.input !== "sample" || weightsFile;
  if (!needsForm) {
    return request("POST", "/api/feature-maps", {
      architecture: state.arch,
      config: config(),
      sample: state.sample,
      weights: state.weights,
      ...(extra.layers ? { layers: extra.layers } : {}),
      ...(extra.channel ? { channel: extra.channel } : {}),
    }, { busyText: "Running the model…" });
  }
  const form = new FormData();
  form.set("architecture", state.arch);
  form.set("config", JSON.stringify(config()));
  if (state.input === "upload" && uploadedImage) form.set("image", uploadedImage);
  else if (state.input === "drawing") form.set("image", await drawingBlob(), "drawing.png");
  else form.set("sample", state.sample);
  if (weightsFile) form.set("weights_file", weightsFile);
  else form.set("weights", state.weights);
  if (extra.layers) form.set("layers", JSON.stringify(extra.layers));
  if (extra.channel) {
    form.set("channel_layer", extra.channel.layer);
    form.set("channel_index", String(extra.channel.index));
  }
  return request("POST", "/api/feature-maps", form, { busyText: "Running the model…" });
}

async function run() {
  writeUrl();
  const mine = ++generation;
  // The maps on screen belong to the previous choice until this run answers: dim them and say whose they are.
  $("fm-layers").classList.add("stale");
  try {
    const report = await send();
    if (mine !== generation) return;
    lastReport = report;
    clearError($("error"));
    render(report);
    $("fm-layers").classList.remove("stale");
  } catch (error) {
    if (mine !== generation) return;
    const shown = lastReport ? ` The maps below are still ${lastReport.architecture}'s, from the previous run.` : "";
    showBanner($("error"), error, { title: "The model could not run", note: shown, retry: run });
  }
}

// ---------------------------------------------------------------- rendering

function render(report) {
  $("fm-input").src = report.input.png;
  $("fm-input-shape").textContent = `input ${shape(report.input.shape)}`;
  $("fm-steps").innerHTML = report.preprocessing.map((s) => `<li>${escapeHtml(s)}</li>`).join("");
  $("fm-weights-label").textContent = report.weights.label;
  const sizes = [report.input.shape[report.input.shape.length - 1], ...report.layers.map((l) => l.shape[l.shape.length - 1])];
  const flow = sizes.filter((v, i) => i === 0 || v !== sizes[i - 1]);
  $("fm-flow").textContent = `Spatial size along the layers: ${flow.join(" → ")}`;
  $("fm-timing").textContent = `${report.elapsed_ms.toLocaleString("en-US")} ms on ${report.device}`;
  renderPrediction(report);
  $("fm-layers").innerHTML = report.layers
    .map((layer, i) => {
      const [c, h, w] = layer.shape;
      const zeros = layer.stats.reduce((sum, s) => sum + s.zero_fraction, 0) / layer.stats.length;
      return `<figure class="panel fm-layer" data-layer="${escapeHtml(layer.path)}">
        <h3 class="panel-title"><span>${i + 1}. ${escapeHtml(layer.path)} <span class="muted">${escapeHtml(layer.type)}</span></span><span class="muted">${shape(layer.shape)}</span></h3>
        <img class="fm-grid" src="${layer.grid_png}" alt="${c} channels of ${escapeHtml(layer.path)}, ${h} by ${w}" data-layer="${escapeHtml(layer.path)}" tabindex="0">
        <figcaption class="muted">${layer.channels_shown < c ? `first ${layer.channels_shown} of ${c} channels` : `${c} channels`}, ${h} × ${w || 1} each · ${(100 * zeros).toFixed(0)}% zeros · click a channel to enlarge</figcaption>
      </figure>`;
    })
    .join("");
}

function renderPrediction(report) {
  const box = $("fm-prediction-box");
  if (!report.prediction) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const labels = chosenSource()?.facts?.labels; // weights that name their classes show every class
  const trained = Boolean(labels) && !weightsFile;
  const items = trained
    ? report.prediction.probabilities.map((p, i) => ({ label: labels[i] ?? String(i), probability: p }))
    : report.prediction.top;
  draw($("fm-prediction"), [
    {
      type: "bar",
      x: items.map((t) => t.label),
      y: items.map((t) => t.probability),
      marker: { color: items.map((t) => (t.label === report.prediction.top[0].label ? palette[0] : palette[7])) },
      hovertemplate: "class %{x}: %{y:.1%}<extra></extra>",
    },
  ], {
    yaxis: { title: "probability", range: [0, 1], tickformat: ".0%" },
    xaxis: { type: "category", title: trained ? "class" : report.weights.source === "random" ? "class (random weights: meaningless)" : "class index" },
    margin: { l: 56, r: 8, t: 8, b: 48 },
  });
  $("fm-prediction").dataset.top = report.prediction.top[0].label;
}

async function showChannel(layerPath, index) {
  try {
    const report = await send({ layers: [layerPath], channel: { layer: layerPath, index } });
    const channel = report.channel;
    const stats = report.layers[0].stats[index];
    $("channel-panel").hidden = false;
    $("channel-title").textContent = `${layerPath}, channel ${index}`;
    draw($("channel-heatmap"), [
      {
        type: "heatmap",
        z: channel.values,
        colorscale: "Viridis",
        hovertemplate: "row %{y}, column %{x}: %{z:.4f}<extra></extra>",
      },
    ], {
      xaxis: { title: "column (pixel)", constrain: "domain" },
      yaxis: { title: "row (pixel)", autorange: "reversed", scaleanchor: "x", constrain: "domain" },
      margin: { l: 56, r: 16, t: 8, b: 48 },
    });
    $("channel-stats").innerHTML = `<dt>min</dt><dd>${fixed(stats.min)}</dd><dt>max</dt><dd>${fixed(stats.max)}</dd>
      <dt>mean</dt><dd>${fixed(stats.mean)}</dd><dt>zeros</dt><dd>${(100 * stats.zero_fraction).toFixed(1)}%</dd>`;
    $("channel-panel").scrollIntoView({ behavior: "smooth", block: "start" });
  } catch (error) {
    showError(error);
  }
}

function channelAt(img, layer, event) {
  const rect = img.getBoundingClientRect();
  const x = ((event.clientX - rect.left) / rect.width) * img.naturalWidth;
  const y = ((event.clientY - rect.top) / rect.height) * img.naturalHeight;
  const [tileH, tileW] = layer.tile;
  const column = Math.min(layer.columns - 1, Math.floor(x / (tileW + 1)));
  const row = Math.min(layer.rows - 1, Math.floor(y / (tileH + 1)));
  return Math.min(layer.channels_shown - 1, row * layer.columns + column);
}

function showError(error) {
  showBanner($("error"), error, { title: "The model could not run" });
}

// ---------------------------------------------------------------- set-up

async function loadArchitecture() {
  info = await architecture(state.arch);
  $("fm-arch").value = state.arch;
  $("fm-preset").innerHTML = `<option value="">Default</option>${info.presets.map((p) => `<option value="${escapeHtml(p.name)}">${escapeHtml(p.title)}</option>`).join("")}`;
  $("fm-preset").value = state.preset;
  sources = await get(`/api/weights?architecture=${encodeURIComponent(state.arch)}`);
  $("fm-weights").innerHTML = sources.map((s) => `<option value="${escapeHtml(s.id)}">${escapeHtml(s.label)}</option>`).join("");
  if (!sources.some((s) => s.id === state.weights)) {
    const preferred = sources.find((s) => s.facts && s.facts.live_default); // the family's bundled weights
    state.weights = preferred ? preferred.id : "random";
  }
  $("fm-weights").value = state.weights;
  $("fm-preset").disabled = Boolean(chosenSource()?.config);
}

function bindDrawing() {
  const canvas = $("draw-canvas");
  const context = canvas.getContext("2d");
  const clear = () => {
    context.fillStyle = "#000";
    context.fillRect(0, 0, canvas.width, canvas.height);
  };
  clear();
  let drawing = false;
  const point = (event) => {
    const rect = canvas.getBoundingClientRect();
    return [((event.clientX - rect.left) / rect.width) * canvas.width, ((event.clientY - rect.top) / rect.height) * canvas.height];
  };
  const later = debounce(() => useDrawing(), 250);
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    const [x, y] = point(event);
    context.strokeStyle = "#fff";
    context.lineWidth = 18;
    context.lineCap = "round";
    context.lineJoin = "round";
    context.beginPath();
    context.moveTo(x, y);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const [x, y] = point(event);
    context.lineTo(x, y);
    context.stroke();
  });
  const end = () => {
    if (!drawing) return;
    drawing = false;
    later();
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointerleave", end);
  $("draw-clear").addEventListener("click", clear);
  $("draw-use").addEventListener("click", useDrawing);
}

async function useDrawing() {
  // A drawing feeds weights trained on drawn-like digits: switch to them if another model is chosen.
  if (!chosenSource()?.facts?.accepts_drawing && drawable) {
    state.arch = drawable.architecture;
    state.weights = drawable.id;
    state.preset = "";
    await loadArchitecture();
  }
  state.input = "drawing";
  document.querySelectorAll(".sample").forEach((s) => s.classList.remove("selected"));
  run();
}

async function init() {
  readUrl();
  const everyWeights = await get("/api/weights");
  drawable = everyWeights.find((s) => s.facts && s.facts.accepts_drawing) || null;
  $("draw-box").hidden = !drawable;
  if (drawable) $("draw-model").textContent = `(${drawable.label.split(":")[0]})`;
  const samples = await get("/api/samples");
  $("fm-samples").innerHTML = samples
    .map((s) => `<button type="button" class="sample${s.id === state.sample ? " selected" : ""}" role="radio" aria-checked="${s.id === state.sample}" data-sample="${s.id}" title="${escapeHtml(`${s.title} (${s.credit})`)}"><img src="${s.url}" alt="${escapeHtml(s.title)}"></button>`)
    .join("");
  $("fm-samples").addEventListener("click", (event) => {
    const button = event.target.closest("[data-sample]");
    if (!button) return;
    state.sample = button.dataset.sample;
    state.input = "sample";
    document.querySelectorAll(".sample").forEach((s) => {
      s.classList.toggle("selected", s === button);
      s.setAttribute("aria-checked", String(s === button));
    });
    run();
  });
  $("fm-arch").addEventListener("change", async () => {
    state.arch = $("fm-arch").value;
    state.preset = "";
    state.weights = ""; // the new architecture's default weights
    weightsFile = null;
    $("fm-weights-file").value = "";
    if (state.input === "drawing") state.input = "sample";
    $("channel-panel").hidden = true;
    await loadArchitecture();
    run();
  });
  $("fm-preset").addEventListener("change", () => {
    state.preset = $("fm-preset").value;
    run();
  });
  $("fm-weights").addEventListener("change", async () => {
    state.weights = $("fm-weights").value;
    weightsFile = null;
    $("fm-weights-file").value = "";
    await loadArchitecture();
    run();
  });
  $("fm-weights-file").addEventListener("change", () => {
    weightsFile = $("fm-weights-file").files[0] || null;
    run();
  });
  $("fm-image").addEventListener("change", () => {
    uploadedImage = $("fm-image").files[0] || null;
    if (!uploadedImage) return;
    state.input = "upload";
    document.querySelectorAll(".sample").forEach((s) => s.classList.remove("selected"));
    run();
  });
  $("fm-layers").addEventListener("click", (event) => {
    const img = event.target.closest("img[data-layer]");
    if (!img || !lastReport) return;
    const layer = lastReport.layers.find((l) => l.path === img.dataset.layer);
    showChannel(layer.path, channelAt(img, layer, event));
  });
  $("fm-layers").addEventListener("keydown", (event) => {
    const img = event.target.closest("img[data-layer]");
    if (img && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      showChannel(img.dataset.layer, 0);
    }
  });
  $("channel-close").addEventListener("click", () => {
    $("channel-panel").hidden = true;
  });
  bindDrawing();
  await loadArchitecture();
  run();
}

init();
