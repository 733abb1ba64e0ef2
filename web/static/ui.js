// voxmail admin UI: the deposits chart (hand-drawn SVG from /ui/api/stats) and live mailbox
// counts (EventSource on the context's /ui/.../events stream). No inline script: the CSP allows
// only this file.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";

  function el(name, attrs, parent) {
    var e = document.createElementNS(SVG, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  function niceMax(v) {
    if (v <= 4) return 4;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }

  function drawDeposits(box, days) {
    var W = Math.max(280, Math.round(box.clientWidth || 720)), H = 240, left = 36, right = 8, top = 12, bottom = 28;
    var max = niceMax(Math.max.apply(null, days.map(function (d) { return d.count; }).concat([0])));
    var total = days.reduce(function (a, d) { return a + d.count; }, 0);
    var fmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img",
      "aria-label": total + " messages left in the last " + days.length + " days" });
    var plotW = W - left - right, plotH = H - top - bottom;
    for (var g = 0; g <= 4; g++) {
      var y = top + plotH - (plotH * g) / 4;
      el("line", { x1: left, x2: W - right, y1: y, y2: y, "class": g ? "grid-line" : "axis" }, svg);
      var t = el("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, svg);
      t.textContent = String(Math.round((max * g) / 4));
    }
    var slot = plotW / days.length, bw = Math.max(2, slot * 0.7);
    var tip = document.createElement("p");
    tip.className = "chart-tip";
    tip.setAttribute("aria-live", "polite");
    days.forEach(function (d, i) {
      var h = d.count ? Math.max(2, (plotH * d.count) / max) : 2;
      var x = left + i * slot + (slot - bw) / 2;
      var label = fmt.format(new Date(d.day * 1000)) + ": " + d.count + " message" + (d.count === 1 ? "" : "s");
      var r = el("rect", { x: x, y: top + plotH - h, width: bw, height: h, rx: 2,
        "class": d.count ? "bar" : "bar-zero", tabindex: "0", "aria-label": label }, svg);
      el("title", {}, r).textContent = label;
      r.addEventListener("mouseenter", function () { tip.textContent = label; });
      r.addEventListener("focus", function () { tip.textContent = label; });
      var every = W < 500 ? 10 : 5;
      if (i % every === 0 || i === days.length - 1) {
        var last = i === days.length - 1;
        var tx = el("text", { x: last ? x + bw : x + bw / 2, y: H - 8, "text-anchor": last ? "end" : "middle" }, svg);
        tx.textContent = fmt.format(new Date(d.day * 1000));
      }
    });
    box.textContent = "";
    box.appendChild(svg);
    box.appendChild(tip);
    var sum = document.getElementById("deposits-sum");
    if (sum) sum.textContent = total + " in total";
  }

  function initChart() {
    var box = document.getElementById("deposits-chart");
    if (!box) return;
    var url = box.getAttribute("data-src") + "?tzoff=" + new Date().getTimezoneOffset();
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (s) { drawDeposits(box, s.deposits); })
      .catch(function () { box.innerHTML = '<p class="muted">The chart could not be loaded.</p>'; });
  }

  function initLive() {
    var live = document.getElementById("live");
    var table = document.getElementById("mailboxes");
    if (!live || !table || !window.EventSource) return;
    var es = new EventSource(live.getAttribute("data-events"));
    es.onopen = function () { live.setAttribute("data-state", "on"); live.textContent = "Live"; };
    es.onerror = function () { live.setAttribute("data-state", "error"); live.textContent = "Reconnecting…"; };
    es.onmessage = function (m) {
      var e;
      try { e = JSON.parse(m.data); } catch (_) { return; }
      if (!e || !e.mailbox || !e.counts) return;
      var rows = table.querySelectorAll("tr[data-mailbox]");
      for (var i = 0; i < rows.length; i++) {
        if (rows[i].getAttribute("data-mailbox") !== e.mailbox) continue;
        [["new", e.counts["new"]], ["old", e.counts.old]].forEach(function (p) {
          var c = rows[i].querySelector('[data-count="' + p[0] + '"]');
          if (!c || c.textContent === String(p[1])) return;
          c.textContent = String(p[1]);
          if (p[0] === "new") c.classList.toggle("count-new", p[1] > 0);
          c.classList.add("flash");
          setTimeout(function () { c.classList.remove("flash"); }, 900);
        });
      }
    };
    es.addEventListener("resync", function () { location.reload(); });
    window.addEventListener("pagehide", function () { es.close(); });
  }

  document.addEventListener("DOMContentLoaded", function () { initChart(); initLive(); });
})();
