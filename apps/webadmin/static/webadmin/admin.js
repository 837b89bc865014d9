/* Sotto web admin: confirmation prompts and live progress. No framework, nothing fetched from outside. */
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form && form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });

  /* Elements with data-poll="<url>" refresh their progress from a JSON endpoint until finished. */
  function poll(el) {
    var url = el.getAttribute("data-poll");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        var pct = Math.round((data.progress || 0) * 100);
        var bar = el.querySelector(".progress > span");
        if (bar) { bar.style.width = pct + "%"; }
        var label = el.querySelector("[data-field=status]");
        if (label) { label.textContent = data.status; }
        var pctLabel = el.querySelector("[data-field=percent]");
        if (pctLabel) { pctLabel.textContent = pct + "%"; }
        var stage = el.querySelector("[data-field=stage]");
        if (stage && data.stage !== undefined) { stage.textContent = data.stage || ""; }
        var msg = el.querySelector("[data-field=message]");
        if (msg && data.message !== undefined) { msg.textContent = data.message || ""; }
        el.setAttribute("data-status", data.status);
        if (!data.finished) { window.setTimeout(function () { poll(el); }, 1500); }
        else if (el.hasAttribute("data-reload-when-done")) { window.location.reload(); }
      })
      .catch(function () { window.setTimeout(function () { poll(el); }, 3000); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-poll]"), function (el) {
      if (el.getAttribute("data-finished") !== "true") { poll(el); }
    });
  });
})();
