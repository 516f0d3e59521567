// Plotly charts that follow the page theme; the toolbar's camera button exports PNG.

import { currentTheme } from "./theme.js";

const palette = ["#4f6bed", "#f08c3a", "#2fb38a", "#d6477b", "#8a63d2", "#e3b341", "#3aa6d8", "#9aa3b5"];

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

export function baseLayout(extra = {}) {
  const text = cssVar("--text") || (currentTheme() === "dark" ? "#e6e9f2" : "#1d2433");
  const grid = cssVar("--grid") || "#dde2ee";
  return {
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "Inter, system-ui, sans-serif", size: 12, color: text },
    margin: { l: 64, r: 16, t: 36, b: 56 },
    colorway: palette,
    xaxis: { gridcolor: grid, zerolinecolor: grid, automargin: true },
    yaxis: { gridcolor: grid, zerolinecolor: grid, automargin: true },
    legend: { orientation: "h", y: -0.25 },
    hoverlabel: { font: { family: "JetBrains Mono, ui-monospace, monospace" } },
    ...withAxes(extra, { gridcolor: grid, zerolinecolor: grid, linecolor: grid, automargin: true }),
  };
}

// Every axis keeps the theme's grid colours, and a title given as a string becomes Plotly's {text} form (the
// bundled Plotly ignores a bare string, which left every chart without axis titles).
function withAxes(extra, axisBase) {
  const out = { ...extra };
  for (const [key, value] of Object.entries(extra)) {
    if (!/^[xy]axis\d*$/.test(key) || typeof value !== "object" || value === null) continue;
    const axis = { ...axisBase, ...value };
    if (typeof axis.title === "string") axis.title = { text: axis.title };
    out[key] = axis;
  }
  if (typeof out.title === "string") out.title = { text: out.title };
  return out;
}

const config = {
  responsive: true,
  displaylogo: false,
  modeBarButtonsToRemove: ["lasso2d", "select2d"],
  toImageButtonOptions: { format: "png", scale: 2 },
};

const drawn = new Map();

export function draw(element, traces, layout) {
  if (!window.Plotly || !element) return;
  drawn.set(element, { traces, layout });
  window.Plotly.react(element, traces, baseLayout(layout), config);
}

export function purge(element) {
  if (window.Plotly && element) window.Plotly.purge(element);
  drawn.delete(element);
}

window.addEventListener("themechange", () => {
  for (const [element, { traces, layout }] of drawn) window.Plotly.react(element, traces, baseLayout(layout), config);
});

export { palette };
