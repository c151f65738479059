// The dashboard's only script: every <time datetime> written by worker_app/web/moments.py shows its
// absolute part in the viewer's own time zone instead of UTC. Served from this server ('self').
(function () {
  "use strict";
  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hour12: false, timeZoneName: "short"
  });
  document.querySelectorAll("time[datetime] .abs").forEach(function (span) {
    var at = new Date(span.parentElement.getAttribute("datetime"));
    if (!isNaN(at.getTime())) { span.textContent = format.format(at); }
  });
})();
