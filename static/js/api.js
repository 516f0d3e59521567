// Calls to the REST API; errors come back as {detail, field, layer} and are thrown as ApiError.

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.detail ? body.detail : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

let busyCount = 0;

export function setBusy(on, text = "Computing…") {
  busyCount = Math.max(0, busyCount + (on ? 1 : -1));
  const indicator = document.getElementById("busy");
  if (!indicator) return;
  indicator.hidden = busyCount === 0;
  document.getElementById("busy-text").textContent = text;
  document.querySelector("main").setAttribute("aria-busy", busyCount > 0 ? "true" : "false");
}

function setBusyText(text) {
  const label = document.getElementById("busy-text");
  if (label && busyCount > 0) label.textContent = text;
}

async function parse(response) {
  const type = response.headers.get("content-type") || "";
  if (type.includes("application/json")) return response.json();
  return response.text();
}

function newRequestId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// While a request runs longer than a moment, show the engine's stage from GET /api/progress/{id}.
function watchProgress(requestId, busyText) {
  let stopped = false;
  let timer = setTimeout(async function poll() {
    if (stopped) return;
    try {
      const response = await fetch(`/api/progress/${requestId}`);
      if (response.ok && !stopped) {
        const state = await response.json();
        const step = state.total > 1 ? ` ${state.done.toLocaleString()} of ${state.total.toLocaleString()} done` : "";
        const what = state.state === "queued" ? "waiting for a free engine process" : `${state.stage}${step}`;
        setBusyText(`${busyText || "Computing…"} (${what}, ${state.elapsed_s.toFixed(1)} s)`);
      }
    } catch {
      // progress is a courtesy: the request itself reports any failure
    }
    if (!stopped) timer = setTimeout(poll, 500);
  }, 700);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

export async function request(method, path, body, { busyText, signal, accept } = {}) {
  setBusy(true, busyText);
  const requestId = newRequestId();
  const stopWatching = method === "POST" ? watchProgress(requestId, busyText) : () => {};
  try {
    const init = { method, headers: { "x-request-id": requestId }, signal };
    if (body instanceof FormData) {
      init.body = body; // the browser writes the multipart boundary
    } else if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (accept) init.headers.accept = accept;
    const response = await fetch(path, init);
    const data = await parse(response);
    if (!response.ok) throw new ApiError(response.status, typeof data === "object" ? data : { detail: data });
    return data;
  } finally {
    stopWatching();
    setBusy(false);
  }
}

export const get = (path, options) => request("GET", path, undefined, options);
export const post = (path, body, options) => request("POST", path, body, options);

// Choices (dtypes, precisions, optimizers) and each family's live facts, written into every page by the server.
let pageFacts = null;
export function facts() {
  if (!pageFacts) pageFacts = JSON.parse(document.getElementById("layerscope-facts").textContent);
  return pageFacts;
}

export function familyFacts(name) {
  return facts().architectures.find((a) => a.name === name) || null;
}

const architectureCache = new Map();

export async function architecture(name) {
  if (!architectureCache.has(name)) architectureCache.set(name, get(`/api/architectures/${encodeURIComponent(name)}`));
  return architectureCache.get(name);
}

export function download(filename, text, type = "text/plain") {
  const blob = new Blob([text], { type });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

export function debounce(fn, wait = 350) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), wait);
  };
}
