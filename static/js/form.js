// A form generated from an architecture's config JSON schema: selects, switches, sliders, list inputs.

import { escapeHtml } from "./format.js";

function resolve(prop) {
  // pydantic writes optional fields as anyOf [{...}, {type: "null"}]
  if (prop.anyOf) {
    const real = prop.anyOf.find((p) => p.type !== "null") || {};
    return { ...prop, ...real, nullable: true, anyOf: undefined };
  }
  if (prop.allOf && prop.allOf.length === 1) return { ...prop, ...prop.allOf[0] };
  return prop;
}

function numberBounds(prop) {
  const min = prop.minimum ?? (prop.exclusiveMinimum !== undefined ? prop.exclusiveMinimum : undefined);
  const max = prop.maximum ?? (prop.exclusiveMaximum !== undefined ? prop.exclusiveMaximum : undefined);
  return { min, max };
}

function fieldHtml(name, raw) {
  const prop = resolve(raw);
  const label = (key) => prop["x-label"] || key.replaceAll("_", " ");
  const id = `cfg-${name}`;
  const help = prop.description ? `<small class="help" id="${id}-help">${escapeHtml(prop.description)}</small>` : "";
  const described = prop.description ? `aria-describedby="${id}-help"` : "";
  if (prop.enum) {
    const unset = prop.nullable ? `<option value="">(default)</option>` : "";
    const options = unset + prop.enum.map((v) => `<option value="${escapeHtml(v)}">${escapeHtml(v)}</option>`).join("");
    const nullable = prop.nullable ? `data-nullable="1"` : "";
    return `<div class="field"><label for="${id}">${label(name)}</label><select id="${id}" name="${name}" data-kind="enum" data-type="${typeof prop.enum[0]}" ${nullable} ${described}>${options}</select>${help}</div>`;
  }
  if (prop.type === "boolean") {
    return `<div class="field field-switch"><label class="switch" for="${id}"><input type="checkbox" id="${id}" name="${name}" data-kind="bool" ${described}><span class="switch-track" aria-hidden="true"></span><span>${label(name)}</span></label>${help}</div>`;
  }
  if (prop.type === "integer" || prop.type === "number") {
    const { min, max } = numberBounds(prop);
    const step = prop.type === "integer" ? 1 : "any";
    const bounds = `${min !== undefined ? `min="${min}"` : ""} ${max !== undefined ? `max="${max}"` : ""}`;
    const nullable = prop.nullable ? `placeholder="default" data-nullable="1"` : "";
    const slider =
      min !== undefined && max !== undefined && (prop.type === "number" ? max - min <= 1 : max - min <= 2048)
        ? `<input type="range" id="${id}-range" data-range-for="${name}" ${bounds} step="${prop.type === "number" ? 0.01 : 1}" aria-label="${label(name)} slider" tabindex="-1">`
        : "";
    return `<div class="field"><label for="${id}">${label(name)}</label><div class="number-row">${slider}<input type="number" id="${id}" name="${name}" data-kind="number" data-type="${prop.type}" ${bounds} step="${step}" ${nullable} ${described}></div>${help}</div>`;
  }
  if (prop.type === "array" && (resolve(prop.items || {}).type === "integer")) {
    return `<div class="field"><label for="${id}">${label(name)}</label><input type="text" id="${id}" name="${name}" data-kind="int-list" inputmode="numeric" placeholder="e.g. 200, 100" ${described}>${help}</div>`;
  }
  if (prop["x-editor"] === "config-file") {
    // A pasted or dropped config.json, checked here before it is sent; the server checks it again.
    return `<div class="field config-file"><label for="${id}">${label(name)}</label>
      <textarea id="${id}" name="${name}" data-kind="json" data-check="config-file" rows="8" spellcheck="false" placeholder="Paste a config.json here, or drop the file" ${described}></textarea>
      <div class="toolbar"><label class="button ghost file-button">Load config.json<input type="file" accept=".json,application/json" data-file-for="${name}" hidden></label></div>
      <small class="field-error" id="${id}-error" role="alert" hidden></small>${help}</div>`;
  }
  if (prop.type === "array" || prop.type === "object") {
    const link = prop["x-editor"] === "builder" ? ` <a class="field-link" href="/build">open in the builder</a>` : "";
    return `<div class="field"><label for="${id}">${label(name)}${link}</label><textarea id="${id}" name="${name}" data-kind="json" rows="6" spellcheck="false" ${described}></textarea>${help}</div>`;
  }
  return `<div class="field"><label for="${id}">${label(name)}</label><input type="text" id="${id}" name="${name}" data-kind="text" ${described}>${help}</div>`;
}

// What a config.json must be before it is worth sending: a JSON object naming a model_type, without remote code.
export function checkConfigFile(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { error: `not JSON: ${error.message}` };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return { error: "a config.json is a JSON object" };
  if (typeof value.model_type !== "string" || !value.model_type) return { error: "it names no model_type (e.g. \"llama\")" };
  if ("auto_map" in value) return { error: `this ${value.model_type} config asks for remote code (auto_map), which is never run` };
  return { value };
}

export class SchemaForm {
  constructor(container, onChange) {
    this.container = container;
    this.onChange = onChange;
    this.schema = null;
  }

  render(schema) {
    this.schema = schema;
    const props = schema.properties || {};
    this.container.innerHTML = Object.entries(props)
      .map(([name, prop]) => fieldHtml(name, prop))
      .join("");
    this.container.querySelectorAll("input[data-file-for]").forEach((picker) => {
      picker.addEventListener("change", () => picker.files[0] && this.loadFile(picker.dataset.fileFor, picker.files[0]));
    });
    this.container.querySelectorAll("textarea[data-check]").forEach((area) => {
      area.addEventListener("dragover", (event) => event.preventDefault());
      area.addEventListener("drop", (event) => {
        event.preventDefault();
        const file = event.dataTransfer.files[0];
        if (file) this.loadFile(area.name, file);
      });
    });
    this.container.querySelectorAll("input:not([data-file-for]), select, textarea").forEach((input) => {
      const event = input.type === "number" || input.type === "text" || input.tagName === "TEXTAREA" ? "input" : "change";
      input.addEventListener(event, () => {
        if (input.dataset.check && !this.checked(input)) return; // not sent until it is a config
        if (input.dataset.rangeFor) {
          this.container.querySelector(`[name="${input.dataset.rangeFor}"]`).value = input.value;
        } else if (input.dataset.kind === "number") {
          const range = this.container.querySelector(`[data-range-for="${input.name}"]`);
          if (range && input.value !== "") range.value = input.value;
        }
        this.onChange(this.values());
      });
    });
  }

  checked(area) {
    const { error } = checkConfigFile(area.value);
    const message = this.container.querySelector(`#${area.id}-error`);
    message.textContent = error ? `This config cannot be used: ${error}.` : "";
    message.hidden = !error;
    area.setAttribute("aria-invalid", error ? "true" : "false");
    return !error;
  }

  async loadFile(name, file) {
    const area = this.container.querySelector(`[name="${name}"]`);
    if (file.size > 64 * 1024) {
      area.value = "";
      this.container.querySelector(`#${area.id}-error`).textContent = `${file.name} is over 64 KB: a config.json is a few KB.`;
      this.container.querySelector(`#${area.id}-error`).hidden = false;
      return;
    }
    area.value = await file.text();
    if (this.checked(area)) this.onChange(this.values());
  }

  setValues(values) {
    for (const [name, value] of Object.entries(values)) {
      const input = this.container.querySelector(`[name="${name}"]`);
      if (!input) continue;
      const kind = input.dataset.kind;
      if (kind === "bool") input.checked = Boolean(value);
      else if (kind === "int-list") input.value = (value || []).join(", ");
      else if (kind === "json") input.value = jsonText(value, input.dataset.check ? 2 : 1);
      else input.value = value === null || value === undefined ? "" : String(value);
      const range = this.container.querySelector(`[data-range-for="${name}"]`);
      if (range && value !== null && value !== undefined) range.value = value;
    }
  }

  values() {
    const out = {};
    this.container.querySelectorAll("[name]").forEach((input) => {
      const kind = input.dataset.kind;
      const name = input.name;
      if (kind === "bool") out[name] = input.checked;
      else if (kind === "number") {
        if (input.value === "") out[name] = input.dataset.nullable ? null : input.value;
        else out[name] = input.dataset.type === "integer" ? Number.parseInt(input.value, 10) : Number.parseFloat(input.value);
      } else if (kind === "enum") {
        if (input.value === "" && input.dataset.nullable) out[name] = null;
        else out[name] = input.dataset.type === "number" ? Number(input.value) : input.value;
      } else if (kind === "int-list") {
        out[name] = input.value
          .split(/[\s,]+/)
          .filter(Boolean)
          .map((v) => (/^-?\d+$/.test(v) ? Number.parseInt(v, 10) : v));
      } else if (kind === "json") {
        try {
          out[name] = JSON.parse(input.value);
        } catch {
          out[name] = input.value; // the server says what is wrong with it
        }
      } else out[name] = input.value;
    });
    return out;
  }
}

// A list of number rows reads as a matrix, one row per line; anything else is indented JSON.
function jsonText(value, indent) {
  const rows = Array.isArray(value) && value.length && value.every((r) => Array.isArray(r) && r.every((v) => typeof v === "number"));
  if (rows) return `[${value.map((r) => JSON.stringify(r).replaceAll(",", ", ")).join(",\n ")}]`;
  if (Array.isArray(value) && value.every((v) => typeof v === "number")) return JSON.stringify(value).replaceAll(",", ", ");
  return JSON.stringify(value, null, indent);
}
