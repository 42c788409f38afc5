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
})();
