// Live alerts of one domain by server-sent events: each one becomes the table's first row.
// The page works without this file (reload shows new alerts); this only adds live updates.
"use strict";
(function () {
  var live = document.getElementById("live");
  var body = document.getElementById("alerts");
  if (!live || !body || !window.EventSource) { return; }
  var source = new EventSource(live.getAttribute("data-stream"));
  source.addEventListener("open", function () {
    live.textContent = "Live: new alerts appear here as sys-sec logs them.";
    live.setAttribute("data-connected", "yes");
  });
  source.addEventListener("alert", function (event) {
    var a = JSON.parse(event.data);
    var none = body.querySelector("tr.none");
    if (none) { none.remove(); }
    var row = document.createElement("tr");
    row.className = "new";
    [a.timestamp.slice(0, 19), a.action, a.signature + " (" + a.signature_id + ")",
     a.src, a.dest].forEach(function (text) {
      var cell = document.createElement("td");
      cell.textContent = text;  // text, never markup: alert fields come from the network
      row.appendChild(cell);
    });
    body.insertBefore(row, body.firstChild);
  });
})();
