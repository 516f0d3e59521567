// One error display for every page: what failed, where (field, layer), and the field marked invalid.

import { ApiError } from "./api.js";
import { escapeHtml } from "./format.js";

export function errorBody(error) {
  return error instanceof ApiError ? error.body : { detail: String(error && error.message ? error.message : error) };
}

// banner: the page's error element; fieldFor(body) may return the input to mark invalid.
// retry: offered as a button when the server was busy (503: the device queue) or ran out of time (504).
export function showError(banner, error, { title = "That did not work", fieldFor = null, note = "", retry = null } = {}) {
  const body = errorBody(error);
  clearError(banner);
  const where = [];
  if (body.layer) where.push(`layer <code>${escapeHtml(body.layer)}</code>`);
  if (body.field) where.push(`field <code>${escapeHtml(body.field)}</code>`);
  banner.innerHTML = `<strong>${escapeHtml(title)}</strong>${where.length ? ` (${where.join(", ")})` : ""}: ${escapeHtml(body.detail || "")}${note ? `<span class="muted">${escapeHtml(note)}</span>` : ""}`;
  banner.hidden = false;
  if (retry && error instanceof ApiError && (error.status === 503 || error.status === 504)) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button";
    button.textContent = error.status === 503 ? "Try again (the device queue may have cleared)" : "Try again";
    button.addEventListener("click", () => {
      clearError(banner);
      retry();
    });
    banner.append(" ", button);
  }
  const input = fieldFor ? fieldFor(body) : null;
  if (input) {
    // The message again next to the field at fault, where the eye is (the banner may be far above).
    const inline = document.createElement("small");
    inline.className = "field-error";
    inline.dataset.inlineError = "";
    inline.id = `${input.id || "field"}-error`;
    inline.textContent = body.detail || "";
    (input.closest(".number-row") || input).insertAdjacentElement("afterend", inline);
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-errormessage", inline.id);
  }
  return body;
}

export function clearError(banner) {
  banner.hidden = true;
  document.querySelectorAll("[data-inline-error]").forEach((el) => el.remove());
  document.querySelectorAll("[aria-invalid]").forEach((el) => {
    el.removeAttribute("aria-invalid");
    el.removeAttribute("aria-errormessage");
  });
}
