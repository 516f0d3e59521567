// The graph view: POST /api/graph's nodes and edges, laid out by dagre, drawn as SVG.
// Containers (non-leaf module calls) are drawn as boxes around what runs inside them, or collapsed into one
// node; repeated blocks start collapsed when the report says so. Each drawn node carries its module path in
// data-path, so the table and the graph select the same layer.

import { graphlib, layout } from "/static/lib/dagre-3.1.3.esm.js";
import { escapeHtml, shape } from "./format.js";

const NS = "http://www.w3.org/2000/svg";
const CHAR = 6.6; // px per character of the 11 px monospace labels
const NODE_H = 36;

function short(dims) {
  return dims ? shape(dims).replaceAll(" ", "") : "";
}

export class GraphView {
  constructor(container, { onSelect }) {
    this.container = container;
    this.onSelect = onSelect;
    this.report = null;
    this.collapsed = new Set();
    this.selected = null;
    container.addEventListener("click", (event) => this.#click(event));
    container.addEventListener("dblclick", (event) => {
      const node = event.target.closest("[data-id]");
      if (node && node.dataset.container === "1") this.toggle(node.dataset.id);
    });
    container.addEventListener("keydown", (event) => this.#key(event));
  }

  setData(report) {
    this.report = report;
    this.byId = new Map(report.nodes.map((n) => [n.id, n]));
    this.children = new Map();
    for (const node of report.nodes) {
      if (node.parent) {
        if (!this.children.has(node.parent)) this.children.set(node.parent, []);
        this.children.get(node.parent).push(node);
      }
    }
    // The root call holds everything: it is never drawn as a box.
    this.root = report.nodes.find((n) => n.kind === "module" && !n.parent) || null;
    this.collapsed = new Set(report.collapsed_by_default);
    this.render();
  }

  toggle(id) {
    if (this.collapsed.has(id)) this.collapsed.delete(id);
    else this.collapsed.add(id);
    this.render();
  }

  expandAll() {
    this.collapsed.clear();
    this.render();
  }

  collapseBlocks() {
    if (!this.report) return;
    this.collapsed = new Set(this.report.nodes.filter((n) => n.repeated && !n.leaf).map((n) => n.id));
    this.render();
  }

  // The node that stands for `node` on screen: itself, or its outermost collapsed ancestor.
  #visible(node) {
    let shown = node;
    for (let up = node.parent ? this.byId.get(node.parent) : null; up; up = up.parent ? this.byId.get(up.parent) : null) {
      if (this.collapsed.has(up.id)) shown = up;
    }
    return shown;
  }

  #isBox(node) {
    return node.kind === "module" && !node.leaf && node !== this.root && !this.collapsed.has(node.id);
  }

  render() {
    if (!this.report) return;
    const g = new graphlib.Graph({ compound: true, multigraph: false });
    g.setGraph({ rankdir: "TB", nodesep: 18, ranksep: 34, edgesep: 8, marginx: 12, marginy: 24 });
    g.setDefaultEdgeLabel(() => ({}));
    const drawn = [];
    const shown = this.report.nodes.filter((node) => node !== this.root && this.#visible(node) === node);
    const holding = new Set(shown.map((node) => node.parent)); // boxes need something inside them
    for (const node of shown) {
      if (this.#isBox(node) && holding.has(node.id)) {
        g.setNode(node.id, { box: true, node, paddingTop: 22, paddingLeft: 8, paddingRight: 8, paddingBottom: 8 });
      } else {
        const title = this.#title(node);
        const width = Math.max(64, Math.max(title.length, short(node.output_shape).length) * CHAR + 18);
        g.setNode(node.id, { node, width, height: NODE_H, title });
      }
      drawn.push(node);
    }
    for (const node of drawn) {
      const parent = node.parent && node.parent !== this.root?.id ? node.parent : null;
      if (parent && g.hasNode(parent) && g.node(parent).box) g.setParent(node.id, parent);
    }
    const seen = new Set();
    for (const edge of this.report.edges) {
      const source = this.#visible(this.byId.get(edge.source));
      const target = this.#visible(this.byId.get(edge.target));
      if (source === target || !g.hasNode(source.id) || !g.hasNode(target.id)) continue;
      const key = `${source.id}>${target.id}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const label = short(edge.shape);
      g.setEdge(source.id, target.id, { label, width: label.length * 6 + 4, height: 12, labelpos: "c" });
    }
    layout(g);
    this.#draw(g);
  }

  #title(node) {
    if (node.kind === "input" || node.kind === "output") return node.path;
    if (node.kind === "op") return node.type;
    const name = node.path.split(".").pop() || node.type;
    const collapsed = this.collapsed.has(node.id) ? " ▸" : "";
    return name === node.type ? `${name}${collapsed}` : `${name} · ${node.type}${collapsed}`;
  }

  #draw(g) {
    const { width, height } = g.graph();
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("xmlns", NS);
    svg.setAttribute("width", String(Math.ceil(width)));
    svg.setAttribute("height", String(Math.ceil(height)));
    svg.setAttribute("viewBox", `0 0 ${Math.ceil(width)} ${Math.ceil(height)}`);
    svg.setAttribute("role", "group");
    svg.setAttribute("aria-label", `Graph of ${this.report.model_class}: ${g.nodeCount()} nodes`);
    svg.classList.add("graph-svg");
    const style = getComputedStyle(this.container);
    const color = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
    const ink = color("--text", "#1f2430");
    const muted = color("--muted", "#667085");
    const surface = color("--surface", "#ffffff");
    const accent = color("--accent", "#4a5fd8");
    const parts = [
      `<defs><marker id="graph-arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="${muted}"/></marker></defs>`,
      `<rect width="100%" height="100%" fill="${surface}"/>`,
    ];
    const boxes = g.nodes().map((id) => g.node(id)).filter((n) => n.box);
    boxes.sort((a, b) => a.node.depth - b.node.depth);
    for (const box of boxes) {
      const n = box.node;
      const x = box.x - box.width / 2;
      const y = box.y - box.height / 2;
      const right = n.depth % 2 === 0; // a box's label sits just above it; nested ones alternate sides
      parts.push(`<g class="graph-box" data-id="${n.id}" data-path="${escapeHtml(n.path)}" data-container="1">
        <rect x="${x}" y="${y}" width="${box.width}" height="${box.height}" rx="8" fill="${accent}" fill-opacity="0.05" stroke="${accent}" stroke-opacity="0.35" stroke-dasharray="4 3"/>
        <text class="graph-toggle" data-toggle="${n.id}" x="${right ? x + box.width - 6 : x + 6}" y="${y - 4}" text-anchor="${right ? "end" : "start"}" font-size="10" font-family="ui-monospace, monospace" fill="${muted}" tabindex="0" role="button" aria-label="Collapse ${escapeHtml(n.path)}">▾ ${escapeHtml(n.path)} · ${escapeHtml(n.type)}</text>
      </g>`);
    }
    for (const id of g.edges()) {
      const edge = g.edge(id);
      const points = edge.points.map((p) => `${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" L");
      parts.push(`<path class="graph-edge" d="M${points}" fill="none" stroke="${muted}" stroke-width="1.2" marker-end="url(#graph-arrow)"/>`);
      if (edge.label && edge.x !== undefined) {
        parts.push(`<text class="graph-edge-label" x="${edge.x}" y="${edge.y + 4}" text-anchor="middle" font-size="9" font-family="ui-monospace, monospace" fill="${muted}">${escapeHtml(edge.label)}</text>`);
      }
    }
    for (const id of g.nodes()) {
      const item = g.node(id);
      if (item.box) continue;
      const n = item.node;
      const x = item.x - item.width / 2;
      const y = item.y - item.height / 2;
      const container = n.kind === "module" && !n.leaf;
      const fill = n.kind === "op" ? color("--graph-op", "#fff4e0") : n.kind === "module" ? surface : color("--graph-io", "#e8f3ec");
      const tip = `${n.path || n.type} (${n.type})${n.params ? ` · ${n.params.toLocaleString("en-US")} parameters` : ""}${n.flops ? ` · ${n.flops.toLocaleString("en-US")} FLOPs` : ""}${container ? " · double-click or Enter to expand" : ""}`;
      parts.push(`<g class="graph-node graph-${n.kind}${container ? " graph-collapsed" : ""}" data-id="${n.id}" data-path="${escapeHtml(n.path)}" data-kind="${n.kind}"${container ? ' data-container="1"' : ""} tabindex="-1" role="button" aria-label="${escapeHtml(tip)}">
        <title>${escapeHtml(tip)}</title>
        <rect x="${x}" y="${y}" width="${item.width}" height="${item.height}" rx="${n.kind === "op" ? 14 : 5}" fill="${fill}" stroke="${container ? accent : muted}" stroke-width="${container ? 1.6 : 1}"/>
        <text x="${item.x}" y="${y + 15}" text-anchor="middle" font-size="11" font-family="ui-monospace, monospace" fill="${ink}">${escapeHtml(item.title)}</text>
        <text x="${item.x}" y="${y + 29}" text-anchor="middle" font-size="10" font-family="ui-monospace, monospace" fill="${muted}">${escapeHtml(short(n.output_shape))}</text>
      </g>`);
    }
    svg.innerHTML = parts.join("");
    this.container.replaceChildren(svg);
    this.svg = svg;
    this.#roving(svg.querySelector(".graph-node"));
    if (this.selected) this.select(this.selected, { notify: false, scroll: false });
  }

  select(path, { notify = false, scroll = true } = {}) {
    this.selected = path;
    if (!this.svg) return;
    let first = null;
    this.svg.querySelectorAll("[data-path]").forEach((el) => {
      const on = el.dataset.path === path && el.dataset.kind !== "op";
      el.classList.toggle("graph-selected", on);
      if (on && !first) first = el;
    });
    if (!first) {
      // A layer inside a collapsed block: mark the block that holds it.
      const hidden = this.report.nodes.find((n) => n.path === path && n.kind === "module");
      const shown = hidden ? this.#visible(hidden) : null;
      first = shown ? this.svg.querySelector(`[data-id="${shown.id}"]`) : null;
      if (first) first.classList.add("graph-selected");
    }
    if (first?.classList.contains("graph-node")) this.#roving(first);
    if (first && scroll) first.scrollIntoView({ block: "nearest", inline: "nearest" });
    if (notify && path !== null) this.onSelect(path);
  }

  #click(event) {
    const toggle = event.target.closest("[data-toggle]");
    if (toggle) {
      this.toggle(toggle.dataset.toggle);
      return;
    }
    const node = event.target.closest(".graph-node");
    if (node) this.select(node.dataset.path, { notify: true, scroll: false });
  }

  // One node is in the Tab order (the selected one, else the first); arrows move between nodes in drawing order.
  #roving(node) {
    if (!this.svg || !node) return;
    this.svg.querySelectorAll(".graph-node[tabindex='0']").forEach((el) => (el.tabIndex = -1));
    node.tabIndex = 0;
  }

  #key(event) {
    const target = event.target.closest("[data-id], [data-toggle]");
    const step = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1 }[event.key];
    if (target && step && target.classList.contains("graph-node")) {
      event.preventDefault();
      const nodes = [...this.svg.querySelectorAll(".graph-node")];
      const next = nodes[nodes.indexOf(target) + step];
      if (next) {
        this.#roving(next);
        next.focus();
        next.scrollIntoView({ block: "nearest", inline: "nearest" });
      }
      return;
    }
    if (!target || (event.key !== "Enter" && event.key !== " ")) return;
    event.preventDefault();
    if (target.dataset.toggle) this.toggle(target.dataset.toggle);
    else if (target.dataset.container === "1" && event.key === "Enter" && this.selected === target.dataset.path) this.toggle(target.dataset.id);
    else this.select(target.dataset.path, { notify: true, scroll: false });
  }

  svgText() {
    return this.svg ? `<?xml version="1.0" encoding="UTF-8"?>\n${new XMLSerializer().serializeToString(this.svg)}` : "";
  }

  // A PNG at twice the drawing's size, from the same SVG.
  async pngBlob() {
    const text = this.svgText();
    if (!text) return null;
    const url = URL.createObjectURL(new Blob([text], { type: "image/svg+xml" }));
    try {
      const image = new Image();
      image.src = url;
      await image.decode();
      const canvas = document.createElement("canvas");
      canvas.width = image.naturalWidth * 2;
      canvas.height = image.naturalHeight * 2;
      const context = canvas.getContext("2d");
      context.scale(2, 2);
      context.drawImage(image, 0, 0);
      return await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    } finally {
      URL.revokeObjectURL(url);
    }
  }
}
