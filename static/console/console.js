// Console behaviour that templates used to inline. The Content-Security-Policy allows
// scripts from /static/ only (docs/SECURITY.md), so no onclick= or onsubmit= attribute
// runs: templates mark elements with data- attributes and these document-level
// listeners act on them, also on fragments htmx swaps in later.
(function () {
  "use strict";

  // <button data-copy-from="element-id">: copy that element's text, say how it went.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-from]");
    if (!button) {
      return;
    }
    var source = document.getElementById(button.dataset.copyFrom);
    if (!source || !navigator.clipboard) {
      button.textContent = "Select the text to copy it";
      return;
    }
    navigator.clipboard.writeText(source.textContent).then(
      function () { button.textContent = "Copied"; },
      function () { button.textContent = "Select the text to copy it"; }
    );
  });

  // <form data-confirm="question">: submitted only once the question is answered yes.
  document.addEventListener("submit", function (event) {
    var form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });
  // The theme picker (<select data-theme-picker>): "system" forgets the choice, so the
  // stylesheet follows prefers-color-scheme again; theme.js applies a stored one early.
  function storedTheme() {
    try {
      return window.localStorage.getItem("aipk-theme") || "system";
    } catch (error) {
      return "system";
    }
  }
  function applyTheme(theme) {
    var root = document.documentElement;
    try {
      if (theme === "light" || theme === "dark") {
        window.localStorage.setItem("aipk-theme", theme);
      } else {
        window.localStorage.removeItem("aipk-theme");
      }
    } catch (error) {
      // not remembered, still applied to this page
    }
    if (theme === "light" || theme === "dark") {
      root.dataset.theme = theme;
    } else {
      delete root.dataset.theme;
    }
  }
  document.addEventListener("change", function (event) {
    var picker = event.target.closest("[data-theme-picker]");
    if (picker) {
      applyTheme(picker.value);
    }
  });

  // The phone menu: <button data-nav-toggle aria-controls=...> opens and closes its nav.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-nav-toggle]");
    if (!button) {
      return;
    }
    var nav = button.closest("nav");
    var open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) {
      nav.setAttribute("data-open", "");
    } else {
      nav.removeAttribute("data-open");
    }
  });

  // Escape closes an open phone menu, and the focus goes back to its button.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") {
      return;
    }
    var button = document.querySelector("nav[data-open] [data-nav-toggle]");
    if (button) {
      button.click();
      button.focus();
    }
  });

  // A table wider than its .table-scroll box scrolls sideways inside it; a keyboard user
  // can only scroll a box that takes the focus (WCAG 2.1.1), so such a box becomes a named
  // region in the tab order, and stops being one when the window grows wide enough.
  function markScrollingTables() {
    document.querySelectorAll(".table-scroll").forEach(function (box) {
      var scrolls = box.scrollWidth > box.clientWidth;
      if (scrolls && !("scrollRegion" in box.dataset) && !box.hasAttribute("tabindex")) {
        var section = box.closest("section, .card");
        var heading = section && section.querySelector("h2, h3");
        box.dataset.scrollRegion = "";
        box.setAttribute("tabindex", "0");
        box.setAttribute("role", "region");
        box.setAttribute(
          "aria-label",
          (heading ? heading.textContent.trim() + ": " : "") + "table, scrolls sideways"
        );
      } else if (!scrolls && "scrollRegion" in box.dataset) {
        delete box.dataset.scrollRegion;
        box.removeAttribute("tabindex");
        box.removeAttribute("role");
        box.removeAttribute("aria-label");
      }
    });
  }
  markScrollingTables();
  window.addEventListener("resize", markScrollingTables);
  // a fragment htmx swaps in may bring (or widen) a table
  document.addEventListener("htmx:afterSettle", markScrollingTables);

  // console.js runs deferred, after parsing: show each picker's current choice
  document.querySelectorAll("[data-theme-picker]").forEach(function (picker) {
    picker.value = storedTheme();
  });
})();
