// Haven dashboard: confirmations for destructive forms, the live log tail and live build
// output. Pages work without it (forms are plain forms); only the live parts need it.
"use strict";
document.addEventListener("submit", function (ev) {
  var f = ev.target;
  var q = f.getAttribute && f.getAttribute("data-confirm");
  if (q && !window.confirm(q)) { ev.preventDefault(); }
}, true);

(function () {
  var form = document.getElementById("log-filters");
  var out = document.getElementById("log");
  if (!form || !out) { return; }
  var source = null;
  function start() {
    if (source) { source.close(); source = null; }
    out.textContent = "";
    var body = new URLSearchParams();
    body.set("csrf", form.getAttribute("data-csrf"));
    body.set("dyno", form.elements.dyno.value);
    body.set("type", form.elements.namedItem("type").value);
    body.set("source", form.elements.source.value);
    fetch("/dashboard/apps/" + encodeURIComponent(form.getAttribute("data-app")) + "/logs/session", {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "Content-Type": "application/x-www-form-urlencoded" }
    }).then(function (r) {
      if (!r.ok) { return r.text().then(function (t) { throw new Error(t); }); }
      return r.json();
    }).then(function (j) {
      source = new EventSource(j.stream);
      source.onmessage = function (m) {
        var atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
        out.appendChild(document.createTextNode(m.data + "\n"));
        if (atEnd) { out.scrollTop = out.scrollHeight; }
      };
      // A log session is single-use: on a broken stream, open a new one.
      source.onerror = function () { source.close(); source = null; setTimeout(start, 2000); };
    }).catch(function (e) { out.textContent = "Cannot open the log stream: " + e.message; });
  }
  form.addEventListener("submit", function (ev) { ev.preventDefault(); start(); });
  start();
})();

// Build output, live: read the stream as it comes and append it; at its end, refresh
// the build's status from the page.
(function () {
  var outs = document.querySelectorAll("pre.build-output[data-src]");
  Array.prototype.forEach.call(outs, function (out) {
    function append(t) {
      var atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
      out.appendChild(document.createTextNode(t));
      if (atEnd) { out.scrollTop = out.scrollHeight; }
    }
    fetch(out.getAttribute("data-src"), { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) {
        return r.text().then(function (t) {
          var m = t;
          try { m = JSON.parse(t).message || t; } catch (e) { /* plain text */ }
          throw new Error(m);
        });
      }
      var reader = r.body.getReader();
      var dec = new TextDecoder();
      function pump() {
        return reader.read().then(function (c) {
          if (c.done) { append(dec.decode()); return finished(); }
          append(dec.decode(c.value, { stream: true }));
          return pump();
        });
      }
      return pump();
    }).catch(function (e) { append("Cannot read the build output: " + e.message + "\n"); });
    function finished() {
      out.setAttribute("data-done", "1");
      var status = document.getElementById("build-status");
      if (!status) { return; }
      fetch(location.href, { credentials: "same-origin" }).then(function (r) { return r.text(); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById("build-status");
          if (fresh) { status.textContent = fresh.textContent; }
        }).catch(function () { /* the status shown stays */ });
    }
  });
})();
