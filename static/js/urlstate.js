// A page's state in its URL, declared once: name -> { param, type, fallback }. Every page reads and writes it
// through here, so a link reproduces what the sender saw and a value left at its default stays out of the link.
//   type: "string" (default), "int", "float", "bool" ("1" when true) or "json"
//   fallback: the value when the URL has none (a function is called with the values read so far)

function decode(raw, type) {
  if (type === "int") return Number.parseInt(raw, 10) || undefined; // 0 or not a number: the fallback
  if (type === "float") {
    const value = Number.parseFloat(raw);
    return Number.isFinite(value) ? value : undefined;
  }
  if (type === "bool") return raw === "1";
  if (type === "json") {
    try {
      return JSON.parse(raw);
    } catch {
      return undefined; // a hand-edited link: the fallback
    }
  }
  return raw;
}

function encode(value, type) {
  if (type === "bool") return value ? "1" : "";
  if (type === "json") return JSON.stringify(value);
  return String(value);
}

function fallbackOf(field, values) {
  return typeof field.fallback === "function" ? field.fallback(values) : structuredClone(field.fallback);
}

/** Read every declared field from the URL into `target` (and return it). */
export function readUrlState(fields, target = {}) {
  const params = new URLSearchParams(location.search);
  for (const [name, field] of Object.entries(fields)) {
    const raw = params.get(field.param);
    const value = raw === null || raw === "" ? undefined : decode(raw, field.type);
    target[name] = value === undefined ? fallbackOf(field, target) : value;
  }
  return target;
}

/** The query string of `source`'s declared fields; a value equal to its fallback, empty or null is left out. */
export function urlQuery(fields, source) {
  const params = new URLSearchParams();
  for (const [name, field] of Object.entries(fields)) {
    const value = source[name];
    if (value === undefined || value === null || value === "" || (field.type === "bool" && !value)) continue;
    if (!field.keep && JSON.stringify(value) === JSON.stringify(fallbackOf(field, source))) continue;
    params.set(field.param, encode(value, field.type));
  }
  return params;
}

/** Replace the URL with `source`'s state (no new history entry). */
export function writeUrlState(fields, source) {
  const query = urlQuery(fields, source).toString();
  history.replaceState(null, "", query ? `${location.pathname}?${query}` : location.pathname);
}
