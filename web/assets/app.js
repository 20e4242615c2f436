// taskmill dashboard: live counts, the throughput chart and the events panel, fed by the
// server-sent events of <base>/events. Pages work without it; it only keeps them current.
// Everything from the server is written with textContent, never as HTML.
(function () {
  "use strict";

  var root = document.documentElement;
  root.classList.add("js");

  var base = document.body.dataset.base || "";
  var numbers = new Intl.NumberFormat("en-US");
  // The chart spans the samples so far, from 30 s up to two minutes.
  var MIN_WINDOW_MS = 30000;
  var MAX_WINDOW_MS = 120000;

  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  var live = document.getElementById("live");
  if (!live || typeof EventSource === "undefined") return;

  var chart = document.getElementById("chart");
  var events = document.getElementById("events");
  var samples = []; // { at, processed, failed } per second, oldest first
  var previous = null;

  var source = new EventSource(base + "/events");
  source.addEventListener("open", function () { live.dataset.state = "on"; });
  source.addEventListener("error", function () { live.dataset.state = "off"; });
  source.addEventListener("stats", function (e) { onStats(JSON.parse(e.data)); });
  source.addEventListener("task", function (e) { onTask(JSON.parse(e.data)); });

  // The figures an element shows: its topic's (from the nearest data-topic), or the totals.
  function figuresFor(el, snapshot) {
    var holder = el.closest("[data-topic]");
    if (!holder) return snapshot.total;
    return snapshot.topics[holder.dataset.topic] || null;
  }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function onStats(snapshot) {
    document.querySelectorAll("[data-count], [data-state]").forEach(function (el) {
      var figures = figuresFor(el, snapshot);
      if (!figures) return;
      var value = el.dataset.count ? figures[el.dataset.count] : figures.states[el.dataset.state];
      if (typeof value !== "number") return;
      setText(el, numbers.format(value));
      if (el.hasAttribute("data-alert")) el.classList.toggle("bad", value > 0);
    });
    document.querySelectorAll("[data-latency]").forEach(function (el) {
      var figures = figuresFor(el, snapshot);
      if (figures && typeof figures.latency === "string") setText(el, figures.latency);
    });
    // The "no worker" flags: a topic's, shown while the server flags it.
    document.querySelectorAll("[data-unworked]").forEach(function (el) {
      var holder = el.closest("[data-topic]");
      if (!holder) return;
      var figures = snapshot.topics[holder.dataset.topic];
      el.hidden = !(figures && figures.unworked);
    });

    var known = {};
    document.querySelectorAll("tr[data-topic]").forEach(function (row) {
      var name = row.dataset.topic;
      known[name] = true;
      var figures = snapshot.topics[name];
      if (figures) row.classList.toggle("is-paused", figures.paused);
    });
    var fresh = document.getElementById("new-topics");
    if (fresh) {
      fresh.hidden = !Object.keys(snapshot.topics).some(function (name) { return !known[name]; });
    }

    if (previous) {
      var seconds = Math.max(0.001, (snapshot.at - previous.at) / 1000);
      var rate = function (now, before, key) {
        return Math.max(0, (now[key] - before[key]) / seconds);
      };
      document.querySelectorAll("[data-rate]").forEach(function (el) {
        var figures = figuresFor(el, snapshot);
        var before = figuresFor(el, previous);
        if (!figures || !before) return;
        setText(el, formatRate(rate(figures, before, el.dataset.rate)));
      });
      var processed = rate(snapshot.total, previous.total, "processed");
      var failed = rate(snapshot.total, previous.total, "failed");
      samples.push({ at: snapshot.at, processed: processed, failed: failed });
      while (samples.length && samples[0].at < snapshot.at - MAX_WINDOW_MS) samples.shift();
      var now = document.getElementById("rate-processed");
      if (now) setText(now, formatRate(processed));
      var bad = document.getElementById("rate-failed");
      if (bad) setText(bad, formatRate(failed));
    }
    previous = snapshot;
    draw();
  }

  function formatRate(value) {
    if (value === 0) return "0";
    if (value < 10) return value.toFixed(1);
    return numbers.format(Math.round(value));
  }

  // The chart: processed and failed per second over the last two minutes.
  function draw() {
    if (!chart) return;
    var dpr = window.devicePixelRatio || 1;
    var width = chart.clientWidth;
    var height = chart.clientHeight;
    if (chart.width !== Math.round(width * dpr) || chart.height !== Math.round(height * dpr)) {
      chart.width = Math.round(width * dpr);
      chart.height = Math.round(height * dpr);
    }
    var g = chart.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, width, height);

    var style = getComputedStyle(root);
    var color = function (name) { return style.getPropertyValue(name).trim(); };
    var left = 48, right = 8, top = 8, bottom = 20;
    var plotW = width - left - right;
    var plotH = height - top - bottom;
    var end = samples.length ? samples[samples.length - 1].at : Date.now();
    var span = samples.length ? end - samples[0].at : 0;
    var windowMs = Math.min(MAX_WINDOW_MS, Math.max(MIN_WINDOW_MS, span));
    var start = end - windowMs;

    var peak = 0;
    samples.forEach(function (s) { peak = Math.max(peak, s.processed, s.failed); });
    // Four grid steps of a round size; at least 1 per step.
    var max = 4 * niceCeiling(Math.max(peak, 4) / 4);

    g.font = "11px system-ui, sans-serif";
    g.fillStyle = color("--muted");
    g.strokeStyle = color("--border");
    g.lineWidth = 1;
    g.textBaseline = "middle";
    g.textAlign = "right";
    for (var i = 0; i <= 4; i++) {
      var y = Math.round(top + plotH - (plotH * i) / 4) + 0.5;
      g.beginPath();
      g.moveTo(left, y);
      g.lineTo(width - right, y);
      g.stroke();
      g.fillText(formatAxis((max * i) / 4), left - 8, y);
    }
    g.textAlign = "center";
    g.textBaseline = "alphabetic";
    [[ago(windowMs), 0], [ago(windowMs / 2), 0.5], ["now", 1]].forEach(function (tick) {
      var x = left + plotW * tick[1];
      g.textAlign = tick[1] === 0 ? "left" : tick[1] === 1 ? "right" : "center";
      g.fillText(tick[0], x, height - 4);
    });

    var xOf = function (at) { return left + ((at - start) / windowMs) * plotW; };
    var yOf = function (v) { return top + plotH - (v / max) * plotH; };
    var line = function (key, stroke, fill) {
      if (samples.length < 2) return;
      g.beginPath();
      samples.forEach(function (s, i) {
        var x = xOf(s.at), y = yOf(s[key]);
        if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
      });
      g.strokeStyle = stroke;
      g.lineWidth = 2;
      g.lineJoin = "round";
      g.stroke();
      if (fill) {
        g.lineTo(xOf(samples[samples.length - 1].at), top + plotH);
        g.lineTo(xOf(samples[0].at), top + plotH);
        g.closePath();
        g.globalAlpha = 0.12;
        g.fillStyle = stroke;
        g.fill();
        g.globalAlpha = 1;
      }
    };
    line("processed", color("--good"), true);
    line("failed", color("--bad"), false);
    if (samples.length < 2) {
      g.fillStyle = color("--muted");
      g.textAlign = "center";
      g.fillText("collecting…", left + plotW / 2, top + plotH / 2);
    }
  }

  function ago(ms) {
    var seconds = Math.round(ms / 1000);
    return seconds < 90 ? seconds + " s ago" : Math.round(seconds / 60) + " min ago";
  }

  function niceCeiling(value) {
    var magnitude = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (steps[i] * magnitude >= value) return steps[i] * magnitude;
    }
    return 10 * magnitude;
  }

  function formatAxis(value) {
    if (value >= 1e6) return (value / 1e6).toFixed(value % 1e6 ? 1 : 0) + "M";
    if (value >= 1e3) return (value / 1e3).toFixed(value % 1e3 ? 1 : 0) + "k";
    return value % 1 ? value.toFixed(1) : String(value);
  }

  if (chart) {
    window.addEventListener("resize", draw);
    if (window.matchMedia) {
      var scheme = window.matchMedia("(prefers-color-scheme: dark)");
      if (scheme.addEventListener) scheme.addEventListener("change", draw);
    }
    draw();
  }

  // The events panel.
  var KINDS = {
    TASK_ENQUEUE: ["enqueued", "info"],
    TASK_START: ["started", ""],
    TASK_PROGRESS: ["progress", ""],
    TASK_COMPLETION: ["completed", "good"],
    TASK_RETRY: ["retry", "warn"],
    TASK_FAILURE: ["failed", "bad"],
    TASK_CANCELLED: ["cancelled", "warn"],
    TASK_RECOVERED: ["recovered", "warn"],
    MANAGER_START: ["manager up", "info"],
    MANAGER_STOP: ["manager down", "warn"],
    LAGGED: ["missed", "warn"]
  };
  var MAX_EVENTS = 100;

  function detail(event) {
    switch (event.type) {
      case "TASK_ENQUEUE":
        return event.tick ? "schedule " + event.tick.schedule + " · tick " + new Date(event.tick.tick).toISOString() : "";
      case "TASK_START": return "attempt " + event.attempt + " on " + event.manager;
      case "TASK_COMPLETION": return "attempt " + event.attempt + " in " + event.duration_ms + " ms";
      case "TASK_RETRY": return "attempt " + event.attempt + ": " + event.error;
      case "TASK_FAILURE": return "attempt " + event.attempt + ": " + event.error;
      case "TASK_RECOVERED": return event.dead ? "lease expired, to dead" : "lease expired, back to pending";
      case "TASK_PROGRESS": return JSON.stringify(event.progress);
      case "MANAGER_START": case "MANAGER_STOP": return event.manager;
      case "LAGGED": return event.missed + " events not shown";
      default: return "";
    }
  }

  function cell(tag, className, text) {
    var el = document.createElement(tag);
    el.className = className;
    el.textContent = text;
    return el;
  }

  function onTask(event) {
    if (!events) return;
    var empty = document.getElementById("events-empty");
    if (empty) empty.remove();
    var kind = KINDS[event.type] || [String(event.type).toLowerCase(), ""];
    var li = document.createElement("li");
    if (kind[1]) li.className = "ev-" + kind[1];
    li.dataset.type = event.type;
    var clock = new Date().toLocaleTimeString([], { hour12: false });
    li.appendChild(cell("span", "at", clock));
    li.appendChild(cell("span", "what badge", kind[0]));
    li.appendChild(cell("span", "topic", event.topic || ""));
    var id = cell("span", "id num", "");
    if (typeof event.id === "number") {
      var link = cell("a", "num", "#" + event.id);
      link.href = base + "/tasks/" + event.id;
      id.appendChild(link);
    }
    li.appendChild(id);
    var text = detail(event);
    var more = cell("span", "detail", text);
    more.title = text;
    li.appendChild(more);
    events.insertBefore(li, events.firstChild);
    while (events.children.length > MAX_EVENTS) events.removeChild(events.lastChild);
  }
})();
