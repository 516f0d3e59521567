// The layer table: a collapsible tree in module order, or a flat list of layers sorted by a column.

import { bytes, count, escapeHtml, flops, percent, shape } from "./format.js";

const COLUMNS = [
  { key: "name", label: "Layer", sortable: false },
  { key: "type", label: "Type", sortable: true },
  { key: "output", label: "Output shape", sortable: false },
  { key: "params", label: "Params", sortable: true, numeric: true },
  { key: "share", label: "% params", sortable: false, numeric: true },
  { key: "flops", label: "FLOPs", sortable: true, numeric: true },
  { key: "output_bytes", label: "Output", sortable: true, numeric: true },
  { key: "saved", label: "Saved", title: "Bytes saved for backward in a training step", sortable: true, numeric: true },
];

export class LayerTable {
  constructor(table, { onSelect }) {
    this.table = table;
    this.onSelect = onSelect;
    this.rows = [];
    this.collapsed = new Set();
    this.sort = null; // {key, dir}
    this.selected = null;
    this.saved = new Map();
    this.filter = ""; // a search: matching rows, flat
    this.focusPath = null; // the one row in the Tab order (a roving tabindex)
    table.addEventListener("click", (event) => this.#click(event));
    table.addEventListener("keydown", (event) => this.#key(event));
  }

  render(summary, savedByPath) {
    const first = this.rows.length === 0 || this.rows[0].type !== summary.layers[0].type;
    this.rows = summary.layers;
    this.total = summary.totals.params;
    this.children = new Map();
    for (const row of this.rows) {
      if (row.parent !== null) {
        if (!this.children.has(row.parent)) this.children.set(row.parent, []);
        this.children.get(row.parent).push(row);
      }
    }
    this.saved = this.#subtreeSaved(savedByPath || new Map());
    if (first) this.#defaultCollapse();
    this.#draw();
  }

  setSaved(savedByPath) {
    this.saved = this.#subtreeSaved(savedByPath);
    this.#draw();
  }

  select(path, { notify = true } = {}) {
    this.selected = path;
    this.focusPath = path;
    // Open the ancestors so the selected row is visible.
    let parent = this.rows.find((r) => r.path === path)?.parent;
    while (parent !== null && parent !== undefined) {
      this.collapsed.delete(parent);
      parent = this.rows.find((r) => r.path === parent)?.parent;
    }
    this.#draw();
    const row = this.rows.find((r) => r.path === path);
    if (row && notify) this.onSelect(row);
  }

  search(text) {
    this.filter = text.trim().toLowerCase();
    this.#draw();
  }

  expandAll() {
    this.collapsed.clear();
    this.#draw();
  }

  collapseAll() {
    for (const row of this.rows) if (!row.is_leaf && row.depth >= 1) this.collapsed.add(row.path);
    this.#draw();
  }

  #subtreeSaved(own) {
    const total = new Map();
    for (const row of [...this.rows].reverse()) {
      let value = (total.get(row.path) || 0) + (own.get(row.path) || 0);
      total.set(row.path, value);
      if (row.parent !== null) total.set(row.parent, (total.get(row.parent) || 0) + value);
    }
    return total;
  }

  #defaultCollapse() {
    this.collapsed.clear();
    const limit = this.rows.length > 80 ? 1 : this.rows.length > 40 ? 2 : 99;
    for (const row of this.rows) if (!row.is_leaf && row.depth >= limit) this.collapsed.add(row.path);
  }

  #visibleRows() {
    if (this.filter) {
      return this.rows.filter((r) => `${r.path} ${r.type}`.toLowerCase().includes(this.filter));
    }
    if (this.sort) {
      const key = this.sort.key;
      const value = (row) =>
        key === "params" ? row.params_inclusive
          : key === "flops" ? row.flops_inclusive
          : key === "saved" ? this.saved.get(row.path) || 0
          : key === "output_bytes" ? row.output_bytes
          : row[key];
      const leaves = this.rows.filter((r) => r.is_leaf);
      return leaves.sort((a, b) => {
        const x = value(a);
        const y = value(b);
        const order = typeof x === "string" ? x.localeCompare(y) : x - y;
        return this.sort.dir === "asc" ? order : -order;
      });
    }
    const hidden = new Set();
    const out = [];
    for (const row of this.rows) {
      if (row.parent !== null && (hidden.has(row.parent) || this.collapsed.has(row.parent))) {
        hidden.add(row.path);
        continue;
      }
      out.push(row);
    }
    return out;
  }

  #draw() {
    const head = COLUMNS.map((c) => {
      const sorted = this.sort && this.sort.key === c.key;
      const aria = sorted ? (this.sort.dir === "asc" ? "ascending" : "descending") : "none";
      const label = c.sortable
        ? `<button type="button" class="sort" data-sort="${c.key}">${c.label}<span class="sort-mark" aria-hidden="true">${sorted ? (this.sort.dir === "asc" ? "▲" : "▼") : ""}</span></button>`
        : c.label;
      const title = c.title ? ` title="${c.title}"` : "";
      return `<th scope="col" class="${c.numeric ? "num" : ""}" aria-sort="${aria}"${title}>${label}</th>`;
    }).join("");
    const rows = this.#visibleRows();
    // One row takes part in the Tab order (the selected one, else the first); arrows move between rows.
    const focusable = rows.find((r) => r.path === this.focusPath) || rows.find((r) => r.path === this.selected) || rows[0];
    this.focusPath = focusable ? focusable.path : null;
    const body = rows.map((row) => this.#rowHtml(row)).join("");
    const empty = this.filter && !rows.length ? `<tr><td colspan="${COLUMNS.length}" class="muted">No layer matches “${escapeHtml(this.filter)}”.</td></tr>` : "";
    this.table.innerHTML = `<thead><tr>${head}</tr></thead><tbody>${body}${empty}</tbody>`;
  }

  #rowHtml(row) {
    const flat = Boolean(this.sort || this.filter);
    const hasChildren = this.children.has(row.path);
    const open = !this.collapsed.has(row.path);
    const indent = flat ? 0 : row.depth;
    const toggle = !flat && hasChildren
      ? `<button type="button" class="tree-toggle" data-toggle="${escapeHtml(row.path)}" aria-expanded="${open}" aria-label="${open ? "Collapse" : "Expand"} ${escapeHtml(row.path || row.name)}" tabindex="-1">${open ? "▾" : "▸"}</button>`
      : `<span class="tree-spacer"></span>`;
    const name = flat ? row.path || row.name : row.name;
    const params = row.params_inclusive;
    const saved = this.saved.get(row.path) || 0;
    const selected = this.selected === row.path ? " selected" : "";
    const unused = row.calls === 0 && row.is_leaf ? " unused" : "";
    const shared = row.shared_params.length ? ` <span class="badge" title="${escapeHtml(row.shared_params.join("; "))}">tied</span>` : "";
    return `<tr class="layer-row${selected}${unused}${hasChildren ? " container" : ""}" data-path="${escapeHtml(row.path)}" tabindex="${row.path === this.focusPath ? 0 : -1}" aria-selected="${Boolean(selected)}"${hasChildren && !flat ? ` aria-expanded="${open}"` : ""}>
      <td class="name" style="--depth:${indent}">${toggle}<span class="layer-name" title="${escapeHtml(row.path || row.name)}">${escapeHtml(name)}</span>${shared}</td>
      <td class="type">${escapeHtml(row.type)}</td>
      <td class="shape mono">${row.calls ? shape(row.output_shape) : row.is_leaf ? "unused" : "–"}</td>
      <td class="num mono">${params ? count(params) : "–"}</td>
      <td class="num share"><span class="bar" style="--share:${this.total ? (100 * params) / this.total : 0}%"></span>${params ? percent(params, this.total) : ""}</td>
      <td class="num mono" title="${count(row.flops_inclusive)} FLOPs">${row.flops_inclusive ? flops(row.flops_inclusive) : "–"}</td>
      <td class="num mono">${row.output_bytes ? bytes(row.output_bytes) : "–"}</td>
      <td class="num mono">${saved ? bytes(saved) : "–"}</td>
    </tr>`;
  }

  #click(event) {
    const sort = event.target.closest("[data-sort]");
    if (sort) {
      const key = sort.dataset.sort;
      if (!this.sort || this.sort.key !== key) this.sort = { key, dir: key === "type" ? "asc" : "desc" };
      else if (this.sort.dir === "desc" && key !== "type") this.sort = { key, dir: "asc" };
      else if (this.sort.dir === "asc" && key === "type") this.sort = { key, dir: "desc" };
      else this.sort = null; // third click: back to the tree
      this.#draw();
      return;
    }
    const toggle = event.target.closest("[data-toggle]");
    if (toggle) {
      const path = toggle.dataset.toggle;
      if (this.collapsed.has(path)) this.collapsed.delete(path);
      else this.collapsed.add(path);
      this.#draw();
      this.table.querySelector(`[data-toggle="${CSS.escape(path)}"]`)?.focus();
      return;
    }
    const row = event.target.closest("tr[data-path]");
    if (row) this.select(row.dataset.path);
  }

  #key(event) {
    const row = event.target.closest("tr[data-path]");
    if (!row) return;
    const path = row.dataset.path;
    const toggle = event.target.closest("[data-toggle]");
    const focusRow = (target) => {
      this.focusPath = target;
      this.table.querySelectorAll("tr[data-path]").forEach((tr) => (tr.tabIndex = tr.dataset.path === target ? 0 : -1));
      this.table.querySelector(`tr[data-path="${CSS.escape(target)}"]`)?.focus();
    };
    if ((event.key === "Enter" || event.key === " ") && toggle) {
      event.preventDefault(); // the toggle's own key: open or close, keep the focus on it
      if (this.collapsed.has(path)) this.collapsed.delete(path);
      else this.collapsed.add(path);
      this.#draw();
      this.table.querySelector(`[data-toggle="${CSS.escape(path)}"]`)?.focus();
    } else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault(); // select the row; a collapsed block also opens, as its toggle would
      const opens = this.children.has(path) && this.collapsed.has(path);
      if (opens) this.collapsed.delete(path);
      this.focusPath = path;
      this.select(path);
      focusRow(path);
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp" || event.key === "Home" || event.key === "End") {
      event.preventDefault();
      const all = [...this.table.querySelectorAll("tr[data-path]")];
      const next = { ArrowDown: row.nextElementSibling, ArrowUp: row.previousElementSibling, Home: all[0], End: all.at(-1) }[event.key];
      if (next?.dataset.path !== undefined) focusRow(next.dataset.path);
    } else if ((event.key === "ArrowRight" || event.key === "ArrowLeft") && this.children.has(path)) {
      event.preventDefault();
      if (event.key === "ArrowRight") this.collapsed.delete(path);
      else this.collapsed.add(path);
      this.focusPath = path;
      this.#draw();
      focusRow(path);
    }
  }
}
