// Readable numbers: thousands separators, binary byte units, FLOP prefixes.

export function count(value) {
  if (value === null || value === undefined) return "–";
  return Math.round(value).toLocaleString("en-US");
}

// The short form beside an exact count: 62,378,344 -> "62.4M".
export function approx(value) {
  if (value === null || value === undefined) return "–";
  const units = [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "k"]];
  for (const [scale, unit] of units) {
    if (Math.abs(value) >= scale) return `${(value / scale).toLocaleString("en-US", { maximumFractionDigits: 1 })}${unit}`;
  }
  return count(value);
}

export function bytes(value) {
  if (value === null || value === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let size = Math.abs(value);
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  const sign = value < 0 ? "-" : "";
  if (unit === 0) return `${sign}${count(size)} B`;
  const digits = size >= 100 ? 1 : 2;
  return `${sign}${size.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })} ${units[unit]}`;
}

export function flops(value) {
  if (value === null || value === undefined) return "–";
  const units = ["", "K", "M", "G", "T", "P"];
  let size = value;
  let unit = 0;
  while (Math.abs(size) >= 1000 && unit < units.length - 1) {
    size /= 1000;
    unit += 1;
  }
  if (unit === 0) return `${count(size)} FLOPs`;
  return `${size.toLocaleString("en-US", { maximumFractionDigits: 2, minimumFractionDigits: 2 })} ${units[unit]}FLOPs`;
}

export function shape(dims) {
  if (!dims || !dims.length) return "–";
  return dims.join(" × ");
}

export function percent(part, whole) {
  if (!whole) return "";
  const value = (100 * part) / whole;
  if (value === 0) return "0%";
  if (value < 0.1) return "<0.1%";
  return `${value.toFixed(1)}%`;
}

export function escapeHtml(text) {
  return String(text)
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}
