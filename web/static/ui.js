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

  // Waveform of a message: peaks from the JSON endpoint drawn on a canvas; the played part is
  // tinted, and a click or the arrow keys seek the <audio> element.
  function initWaveform() {
    var box = document.getElementById("waveform");
    if (!box) return;
    var audio = document.getElementById(box.getAttribute("data-for"));
    var canvas = box.querySelector("canvas");
    var peaks = null;
    function color(name) { return getComputedStyle(box).getPropertyValue(name).trim() || "#3d5afe"; }
    function draw() {
      if (!peaks) return;
      var dpr = window.devicePixelRatio || 1, w = box.clientWidth, h = 120;
      canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
      canvas.style.width = w + "px"; canvas.style.height = h + "px";
      var g = canvas.getContext("2d");
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.clearRect(0, 0, w, h);
      var n = peaks.length, gap = 1, bw = Math.max(1, w / n - gap);
      var dur = audio && isFinite(audio.duration) && audio.duration > 0 ? audio.duration : 0;
      var played = dur ? audio.currentTime / dur : 0;
      var on = color("--wave-played"), off = color("--wave");
      for (var i = 0; i < n; i++) {
        var v = Math.max(0.02, Math.min(1, peaks[i] * 1.15));
        var bh = Math.max(2, v * (h - 8));
        g.fillStyle = (i + 0.5) / n <= played ? on : off;
        g.fillRect(i * (w / n), (h - bh) / 2, bw, bh);
      }
    }
    fetch(box.getAttribute("data-src"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (d) { peaks = d.peaks.length ? d.peaks : [0]; box.setAttribute("data-ready", "1"); draw(); })
      .catch(function () { box.classList.add("waveform-failed"); box.setAttribute("aria-label", "The waveform could not be loaded"); });
    if (!audio) return;
    ["timeupdate", "seeked", "loadedmetadata", "play", "pause"].forEach(function (ev) { audio.addEventListener(ev, draw); });
    window.addEventListener("resize", draw);
    box.tabIndex = 0;
    box.addEventListener("click", function (e) {
      var r = canvas.getBoundingClientRect();
      if (!isFinite(audio.duration)) return;
      audio.currentTime = Math.max(0, Math.min(1, (e.clientX - r.left) / r.width)) * audio.duration;
    });
    box.addEventListener("keydown", function (e) {
      if (!isFinite(audio.duration)) return;
      if (e.key === "ArrowRight") audio.currentTime = Math.min(audio.duration, audio.currentTime + 5);
      else if (e.key === "ArrowLeft") audio.currentTime = Math.max(0, audio.currentTime - 5);
      else if (e.key === " ") { if (audio.paused) audio.play(); else audio.pause(); }
      else return;
      e.preventDefault();
    });
  }

  // The messages page: the folder tabs' counts follow the mailbox's live events (refetched from
  // the counts endpoint), and a banner says when a message is left meanwhile.
  function initArrivals() {
    var box = document.getElementById("arrived");
    if (!box || !window.EventSource) return;
    var mailbox = box.getAttribute("data-mailbox"), n = 0, pending = null;
    var countsUrl = box.getAttribute("data-counts");
    function refreshCounts() {
      if (!countsUrl) return;
      fetch(countsUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(function (folders) {
          folders.forEach(function (f) {
            var c = document.querySelector('[data-folder-count="' + f.folder + '"]');
            if (!c || c.textContent === String(f.total)) return;
            c.textContent = String(f.total);
            c.classList.toggle("tab-count-new", f.unread > 0);
            c.classList.add("flash");
            setTimeout(function () { c.classList.remove("flash"); }, 900);
          });
        })
        .catch(function () {});
    }
    var es = new EventSource(box.getAttribute("data-events"));
    es.onopen = function () { box.setAttribute("data-live", "on"); };
    es.onmessage = function (m) {
      var e;
      try { e = JSON.parse(m.data); } catch (_) { return; }
      if (!e || e.mailbox !== mailbox) return;
      // Several events in a burst (a bulk move) cost one refetch.
      clearTimeout(pending);
      pending = setTimeout(refreshCounts, 150);
      if (e.type !== "message.deposited") return;
      if (e.message_id && document.querySelector('tr[data-message="' + e.message_id + '"]')) return;
      n++;
      box.querySelector("[data-text]").textContent = n === 1 ? "A new message arrived." : n + " new messages arrived.";
      box.hidden = false;
    };
    es.addEventListener("resync", refreshCounts);
    window.addEventListener("pagehide", function () { es.close(); });
  }

  // MWI target forms: the address hint follows the chosen kind.
  function initKindHints() {
    document.querySelectorAll("select[data-kind-hints]").forEach(function (sel) {
      var hint = document.getElementById(sel.getAttribute("data-kind-hints"));
      if (!hint) return;
      sel.addEventListener("change", function () {
        var o = sel.options[sel.selectedIndex];
        hint.textContent = o ? o.getAttribute("data-hint") : "";
      });
    });
  }

  // Bulk selection of messages.
  function initBulk() {
    var form = document.getElementById("bulk");
    if (!form) return;
    var all = document.getElementById("select-all");
    var boxes = form.querySelectorAll('input[name="id"]');
    var count = document.getElementById("selected-count");
    function update() {
      var n = 0;
      for (var i = 0; i < boxes.length; i++) if (boxes[i].checked) n++;
      count.textContent = n + " selected";
      all.checked = n === boxes.length && n > 0;
      all.indeterminate = n > 0 && n < boxes.length;
      form.querySelectorAll("[data-needs-selection]").forEach(function (b) { b.disabled = n === 0; });
    }
    all.addEventListener("change", function () {
      for (var i = 0; i < boxes.length; i++) boxes[i].checked = all.checked;
      update();
    });
    for (var i = 0; i < boxes.length; i++) boxes[i].addEventListener("change", update);
    form.addEventListener("submit", function (e) {
      var b = e.submitter;
      if (b && b.value === "delete" && !window.confirm(form.getAttribute("data-confirm-delete"))) e.preventDefault();
    });
    update();
  }

  // Forms that ask before they send (deletes, revokes).
  function initConfirm() {
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (e) {
        if (!window.confirm(f.getAttribute("data-confirm"))) e.preventDefault();
      });
    });
    document.querySelectorAll("[data-copy]").forEach(function (b) {
      b.addEventListener("click", function () {
        var input = document.getElementById(b.getAttribute("data-copy"));
        input.select();
        if (navigator.clipboard) navigator.clipboard.writeText(input.value).catch(function () {});
        b.textContent = "Copied";
      });
    });
  }

  // Recording a greeting in the browser: MediaRecorder (WebM/Opus) → POST with the CSRF token
  // in a header → reload to play it.
  function initRecorders() {
    if (!window.MediaRecorder || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return;
    document.querySelectorAll("[data-recorder]").forEach(function (box) {
      box.hidden = false;
      var rec = box.querySelector("[data-record]"), stop = box.querySelector("[data-stop]");
      var status = box.querySelector("[data-status]");
      var recorder = null, chunks = [], started = 0, timer = null;
      function say(t) { status.textContent = t; }
      rec.addEventListener("click", function () {
        navigator.mediaDevices.getUserMedia({ audio: true }).then(function (stream) {
          var type = MediaRecorder.isTypeSupported("audio/webm;codecs=opus") ? "audio/webm;codecs=opus" : "";
          recorder = type ? new MediaRecorder(stream, { mimeType: type }) : new MediaRecorder(stream);
          chunks = [];
          recorder.ondataavailable = function (e) { if (e.data && e.data.size) chunks.push(e.data); };
          recorder.onstop = function () {
            stream.getTracks().forEach(function (t) { t.stop(); });
            clearInterval(timer);
            say("Saving…");
            var blob = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
            fetch(box.getAttribute("data-url"), {
              method: "POST", credentials: "same-origin", body: blob,
              headers: { "Content-Type": blob.type, "X-CSRF-Token": box.getAttribute("data-csrf"), Accept: "application/json" },
            }).then(function (r) {
              if (!r.ok) return r.text().then(function () { throw new Error("the server refused the recording (" + r.status + ")"); });
              return r.json();
            }).then(function (d) { location.href = d.location; })
              .catch(function (e) { say("Not saved: " + e.message); rec.disabled = false; });
          };
          recorder.start(250);
          started = Date.now();
          rec.disabled = true; stop.disabled = false;
          box.classList.add("recording");
          say("Recording… 0:00");
          timer = setInterval(function () {
            var s = Math.floor((Date.now() - started) / 1000);
            say("Recording… " + Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0"));
          }, 500);
        }).catch(function () { say("The microphone is not available."); });
      });
      stop.addEventListener("click", function () {
        if (!recorder) return;
        stop.disabled = true;
        box.classList.remove("recording");
        recorder.stop();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    initChart(); initLive(); initWaveform(); initArrivals(); initKindHints(); initBulk(); initConfirm(); initRecorders();
  });
})();
