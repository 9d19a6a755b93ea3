// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";
  // Filters and sort apply as soon as they change.
  document.querySelectorAll("#facets-form input[type=checkbox]").forEach(function (box) {
    box.addEventListener("change", function () { box.form.submit(); });
  });
  // On a phone the filters come first but folded, so the results are one tap away; without
  // scripting they stay unfolded (still before the results).
  var toggle = document.getElementById("filters-toggle");
  if (toggle && window.matchMedia && window.matchMedia("(max-width: 50rem)").matches
      && !toggle.querySelector("input[type=checkbox]:checked")) {
    toggle.open = false;
  }
  var sort = document.getElementById("sort");
  if (sort) { sort.addEventListener("change", function () { sort.form.submit(); }); }

  // Copy BibTeX: the button is hidden until scripting can make it work.
  document.querySelectorAll("button[data-copy-target]").forEach(function (button) {
    var source = document.getElementById(button.getAttribute("data-copy-target"));
    var status = document.getElementById("copy-status");
    if (!source) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      var text = source.textContent;
      var done = function () {
        if (status) { status.textContent = button.getAttribute("data-copied") || "Copied to clipboard."; }
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, function () { selectText(source, button); });
      } else { selectText(source, button); }
    });
  });

  // The status messages come from the button's data- attributes, in the page's language.
  function selectText(node, button) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    var status = document.getElementById("copy-status");
    if (status) {
      status.textContent = button.getAttribute("data-selected") || "Selected: press Ctrl+C (or ⌘C) to copy.";
    }
  }
})();
