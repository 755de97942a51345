// model registry console: progressive enhancement only (every page works without it).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // A plot that cannot be drawn (no figures yet, no matplotlib): hide it, show the note.
  document.querySelectorAll("[data-plot]").forEach(function (fig) {
    var img = fig.querySelector("img");
    var note = fig.querySelector(".plot-missing");
    if (!img || !note) return;
    function missing() { img.hidden = true; note.hidden = false; }
    img.addEventListener("error", missing);
    if (img.complete && img.naturalWidth === 0) missing();
  });
  // Ask before irreversible actions (promote, stop).
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });
});
