(function () {
  var data = JSON.parse(document.getElementById("walk").textContent);
  var view = document.getElementById("view");
  var svg = view.querySelector("svg");
  var caption = document.getElementById("caption");
  var equation = document.getElementById("equation");
  var counter = document.getElementById("counter");
  var play = document.getElementById("play");
  var ns = "http://www.w3.org/2000/svg";
  var legend = document.getElementById("legend");
  var width = svg.viewBox.baseVal.width, height = svg.viewBox.baseVal.height;
  var PX = 4 / 3;                              // CSS px per pt, the SVG's unit
  var zoom = 1, k = 0, timer = null;

  function byId(id) { return document.getElementById(id); }
  function outline(g) {
    var shape = g.querySelector("path, polygon");
    if (shape) { shape.classList.add("outline"); }
  }
  // Each gradient block: its texts (title first), the numbers the drawing
  // shows, and a "not yet" standing in its place until the gradient arrives.
  var grads = {};
  Object.keys(data.grads).forEach(function (id) {
    var node = byId(id), block = byId("a_" + id + "_grad") || byId(id + "_grad");
    if (!node || !block) { return; }
    outline(node);
    var texts = Array.prototype.slice.call(block.querySelectorAll("text"));
    var bg = block.querySelector("polygon[fill='#fdecea']");
    if (bg) { bg.classList.add("grad-bg"); }
    var box = block.getBBox();
    var pending = document.createElementNS(ns, "text");
    pending.setAttribute("class", "pending");
    pending.setAttribute("x", box.x + box.width / 2);
    pending.setAttribute("y", box.y + box.height / 2 + 4);
    pending.setAttribute("text-anchor", "middle");
    pending.textContent = data.pending;
    block.parentNode.insertBefore(pending, block.nextSibling);
    // The drawing leaves room for it; should a font run wider, it shrinks to fit.
    var room = box.width - 2, wide = pending.getComputedTextLength();
    if (wide > room) { pending.style.fontSize = (11 * room / wide) + "px"; }
    grads[id] = {node: node, block: block, texts: texts, pending: pending,
                 final: texts.slice(1).map(function (t) { return t.textContent; }),
                 arrivals: data.grads[id]};
  });
  Object.keys(data.ops).forEach(function (id) { var g = byId(id); if (g) { outline(g); } });
  // The gradient blocks are links only to carry an id.
  view.addEventListener("click", function (e) {
    if (e.target.closest && e.target.closest("a")) { e.preventDefault(); }
  });

  // Scrolls ``el`` to the middle of the view; when it is taller or wider than
  // the view, its top left corner stays in sight.
  function centre(el) {
    var r = el.getBoundingClientRect(), v = view.getBoundingClientRect();
    view.scrollLeft += Math.min((r.left + r.right) / 2 - (v.left + v.right) / 2, r.left - v.left);
    view.scrollTop += Math.min((r.top + r.bottom) / 2 - (v.top + v.bottom) / 2, r.top - v.top);
  }
  function setZoom(z) {
    zoom = Math.max(0.02, Math.min(3, z));
    svg.setAttribute("width", (width * zoom) + "pt");
    svg.setAttribute("height", (height * zoom) + "pt");
    document.getElementById("zoomed").textContent = Math.round(zoom * 100) + "%";
    show(k);
  }
  // The zoom at which the whole drawing fits the view.
  function fitZoom() {
    return Math.min(1, view.clientWidth / (width * PX), view.clientHeight / (height * PX));
  }
  // Fit is where the page starts when, at 100%, some op's frame could not show
  // the op with its inputs at once.
  function fitsAtFullSize() {
    return Object.keys(data.inputs).every(function (op) {
      var ids = [op].concat(data.inputs[op]), box = null;
      ids.forEach(function (id) {
        var g = byId(id);
        if (!g) { return; }
        var b = g.getBBox();
        box = box ? [Math.min(box[0], b.x), Math.min(box[1], b.y), Math.max(box[2], b.x + b.width),
                     Math.max(box[3], b.y + b.height)] : [b.x, b.y, b.x + b.width, b.y + b.height];
      });
      return !box || ((box[2] - box[0]) * PX <= view.clientWidth
                      && (box[3] - box[1]) * PX <= view.clientHeight);
    });
  }
  function show(i) {
    k = Math.max(0, Math.min(data.frames - 1, i));
    Object.keys(grads).forEach(function (id) {
      var g = grads[id], now = null, fresh = false;
      g.arrivals.forEach(function (a) {
        if (a[0] <= k) { now = a; }
        if (a[0] === k) { fresh = true; }
      });
      g.block.classList.toggle("hidden", now === null);
      g.pending.classList.toggle("hidden", now !== null);
      g.node.classList.toggle("fresh", fresh);
      var shown = (now && now[1]) ? now[1] : g.final;
      for (var j = 1; j < g.texts.length && j - 1 < shown.length; j++) {
        g.texts[j].textContent = shown[j - 1];
      }
    });
    var current = null;
    Object.keys(data.ops).forEach(function (id) {
      var g = byId(id);
      if (!g) { return; }
      var on = data.ops[id] === k;
      g.classList.toggle("current", on);
      if (on) { current = g; }
    });
    caption.textContent = data.captions[k];
    equation.textContent = data.equations[k];
    counter.textContent = data.counters[k];
    svg.setAttribute("data-frame", String(k));
    // The forward pass and the end show the legend, which says how to read them.
    if (current) { centre(current); } else if (legend) { centre(legend); }
  }
  function stop() { if (timer) { clearInterval(timer); timer = null; play.textContent = "play"; } }
  function toggle() {
    if (timer) { stop(); return; }
    if (k === data.frames - 1) { show(0); }
    play.textContent = "pause";
    timer = setInterval(function () {
      if (k === data.frames - 1) { stop(); } else { show(k + 1); }
    }, 1200);
  }
  byId("first").addEventListener("click", function () { stop(); show(0); });
  byId("prev").addEventListener("click", function () { stop(); show(k - 1); });
  byId("next").addEventListener("click", function () { stop(); show(k + 1); });
  byId("last").addEventListener("click", function () { stop(); show(data.frames - 1); });
  byId("smaller").addEventListener("click", function () { setZoom(zoom / 1.25); });
  byId("larger").addEventListener("click", function () { setZoom(zoom * 1.25); });
  byId("fit").addEventListener("click", function () { setZoom(fitZoom()); });
  byId("actual").addEventListener("click", function () { setZoom(1); });
  play.addEventListener("click", toggle);
  document.addEventListener("keydown", function (e) {
    var keys = {ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1};
    if (e.key in keys) { stop(); show(k + keys[e.key]); }
    else if (e.key === "Home") { stop(); show(0); }
    else if (e.key === "End") { stop(); show(data.frames - 1); }
    else if (e.key === "+" || e.key === "=") { setZoom(zoom * 1.25); }
    else if (e.key === "-") { setZoom(zoom / 1.25); }
    else if (e.key === "f") { setZoom(fitZoom()); }
    else if (e.key === "0") { setZoom(1); }
    else { return; }
    e.preventDefault();
  });
  setZoom(fitsAtFullSize() ? 1 : fitZoom());
})();
