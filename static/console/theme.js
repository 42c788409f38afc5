// Applies the stored theme before the first paint, so a page chosen dark never flashes
// light. Loaded without defer in <head> (a blocking script, on purpose; it is tiny and
// cached): the Content-Security-Policy runs scripts from /static/ only, never inline.
// Why localStorage rather than a cookie the server reads: the choice belongs to this
// browser, pages stay identical for every visitor (cacheable), and no request carries it.
// "system" is the absence of data-theme: the stylesheet then follows prefers-color-scheme.
(function () {
  "use strict";
  var root = document.documentElement;
  // the stylesheet collapses the phone menu and shows the theme picker only when scripts run
  root.classList.add("js");
  try {
    var theme = window.localStorage.getItem("aipk-theme");
    if (theme === "light" || theme === "dark") {
      root.dataset.theme = theme;
    }
  } catch (error) {
    // storage refused (privacy mode, disabled cookies): follow the system
  }
})();
