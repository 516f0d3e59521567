// One error display for every page: what failed, where (field, layer), and the field marked invalid.

import { ApiError } from "./api.js";
import { escapeHtml } from "./format.js";

export function errorBody(error) {
  return error instanceof ApiError ? error.body : { detail: String(error && error.message ? error.message : error) };
}

// banner: the page's error element; fieldFor(body) may return the input to mark invalid.
export function showError(banner, error, { title = "That did not work", fieldFor = null, note = "" } = {}) {
  const body = errorBody(error);
  clearError(banner);
  const where = [];
  if (body.layer) where.push(`layer <code>${escapeHtml(body.layer)}</code>`);
  if (body.field) where.push(`field <code>${escapeHtml(body.field)}</code>`);
  banner.innerHTML = `<strong>${escapeHtml(title)}</strong>${where.length ? ` (${where.join(", ")})` : ""}: ${escapeHtml(body.detail || "")}${note ? `<span class="muted">${escapeHtml(note)}</span>` : ""}`;
  banner.hidden = false;
  const input = fieldFor ? fieldFor(body) : null;
  if (input) {
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-errormessage", banner.id);
  }
  return body;
}

export function clearError(banner) {
  banner.hidden = true;
  document.querySelectorAll("[aria-invalid]").forEach((el) => {
    el.removeAttribute("aria-invalid");
    el.removeAttribute("aria-errormessage");
  });
}
