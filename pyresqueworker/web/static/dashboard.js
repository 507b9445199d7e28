// The dashboard's only script: an auto-refresh switch and confirmations for destructive
// buttons. Loaded from a file because the Content-Security-Policy forbids inline scripts.
(function () {
  "use strict";
  var KEY = "pyresque-auto-refresh";
  var box = document.getElementById("auto-refresh");
  var timer = null;

  function schedule() {
    if (timer !== null) { clearTimeout(timer); timer = null; }
    if (box && box.checked) { timer = setTimeout(function () { location.reload(); }, 5000); }
  }

  if (box) {
    box.checked = window.localStorage.getItem(KEY) === "on";
    box.addEventListener("change", function () {
      window.localStorage.setItem(KEY, box.checked ? "on" : "off");
      schedule();
    });
    schedule();
  }

  document.addEventListener("submit", function (event) {
    var button = event.submitter || event.target.querySelector("button[data-confirm]");
    var question = button && button.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });
})();
