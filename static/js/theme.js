// Light and dark themes: a toggle, remembered, and an event charts listen to.

const root = document.documentElement;
const toggle = document.getElementById("theme-toggle");

export function currentTheme() {
  return root.dataset.theme === "dark" ? "dark" : "light";
}

if (toggle) {
  toggle.setAttribute("aria-pressed", String(currentTheme() === "dark")); // pressed: the dark theme is on
  toggle.addEventListener("click", () => {
    const next = currentTheme() === "dark" ? "light" : "dark";
    root.dataset.theme = next;
    toggle.setAttribute("aria-pressed", String(next === "dark"));
    localStorage.setItem("layerscope-theme", next);
    window.dispatchEvent(new CustomEvent("themechange", { detail: next }));
  });
}
