// Pipeline console: progressive enhancement only; every page works without this file.
// 1. Times are rendered as UTC ISO 8601 in <time datetime>; show them in the viewer's zone.
// 2. A page marked data-refresh="N" reloads itself every N seconds (the overview's charts).
(function () {
  "use strict";
  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
  });
  function localTimes() {
    document.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when.getTime())) {
        el.title = el.getAttribute("datetime");
        el.textContent = format.format(when);
      }
    });
  }
  function refresh() {
    var marked = document.querySelector("[data-refresh]");
    if (!marked) return;
    var seconds = parseInt(marked.getAttribute("data-refresh"), 10);
    if (seconds > 0) {
      setTimeout(function () {
        // Do not reload under someone typing into a form.
        if (!document.activeElement || !/INPUT|TEXTAREA|SELECT/.test(document.activeElement.tagName)) {
          window.location.reload();
        } else {
          refresh();
        }
      }, seconds * 1000);
    }
  }
  document.addEventListener("DOMContentLoaded", function () { localTimes(); refresh(); });
})();
