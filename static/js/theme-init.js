// Apply the saved or preferred theme before first paint (a plain script in <head>: the page policy allows no inline code).
(function () {
  var saved = localStorage.getItem("layerscope-theme");
  var dark = saved ? saved === "dark" : window.matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.dataset.theme = dark ? "dark" : "light";
})();
