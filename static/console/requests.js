// The requests page (/console/requests/): the "Live" toggle, rows that open the drawer,
// and the drawer itself (a native <dialog>: it keeps focus inside and closes on Esc).
// A file of its own because the Content-Security-Policy runs no inline script.
(function () {
  "use strict";

  var LIVE_KEY = "aipk-requests-live";

  function liveToggle() {
    return document.querySelector("[data-live-toggle]");
  }

  function liveOn() {
    var toggle = liveToggle();
    return Boolean(toggle && toggle.checked);
  }

  // The poller asks every 2 s (hx-trigger); while "Live" is off its requests are
  // stopped here rather than the trigger removed, which htmx cannot undo once processed.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var source = event.detail && event.detail.elt;
    if (source && source.id === "requests-live-poller" && !liveOn()) {
      event.preventDefault();
    }
  });

  document.addEventListener("change", function (event) {
    if (!event.target.matches("[data-live-toggle]")) {
      return;
    }
    try {
      window.sessionStorage.setItem(LIVE_KEY, event.target.checked ? "1" : "0");
    } catch (error) {
      // storage refused (private mode): the toggle still works for this page
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var toggle = liveToggle();
    if (!toggle) {
      return;
    }
    try {
      toggle.checked = window.sessionStorage.getItem(LIVE_KEY) === "1";
    } catch (error) {
      toggle.checked = false;
    }
  });

  // rows the live tail prepended: the "none yet" line no longer holds
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail && event.detail.target && event.detail.target.id === "requests-rows") {
      var empty = document.getElementById("requests-empty");
      if (empty) {
        empty.remove();
      }
    }
  });

  // -- the drawer --------------------------------------------------------------------

  var opener = null;

  function drawer() {
    return document.getElementById("request-drawer");
  }

  // A click anywhere on a row opens its request (the time cell holds the real link, so
  // keyboard users and middle-clicks work without this).
  document.addEventListener("click", function (event) {
    var row = event.target.closest("[data-request-row]");
    if (!row || event.target.closest("a, button, input, select")) {
      return;
    }
    var link = row.querySelector("[data-request-link]");
    if (link) {
      link.click();
    }
  });

  document.addEventListener("click", function (event) {
    var link = event.target.closest("[data-request-link]");
    if (link && drawer()) {
      opener = link;
    }
    if (event.target.closest("[data-drawer-close]")) {
      var open = drawer();
      if (open && open.open) {
        open.close();
      }
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var dialog = drawer();
    if (!dialog || !event.detail || event.detail.target.id !== "request-drawer-body") {
      return;
    }
    if (!dialog.open) {
      dialog.showModal();
    }
    var title = document.getElementById("request-drawer-title");
    if (title) {
      title.focus();
    }
  });

  // Esc (the dialog's own "cancel") or the Close button: focus goes back to the row
  document.addEventListener(
    "close",
    function (event) {
      if (event.target === drawer() && opener) {
        opener.focus();
      }
    },
    true
  );
})();
