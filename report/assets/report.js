(function () {
  'use strict';
  var PW = 1000;
  var STEPS = [100, 200, 500, 1000, 2000, 5000, 10000, 15000, 30000, 60000, 120000, 300000, 600000, 900000, 1800000, 3600000, 7200000];
  var SVGNS = 'http://www.w3.org/2000/svg';
  var tip = document.getElementById('tip');

  function niceStep(span) {
    for (var i = 0; i < STEPS.length; i++) { if (span / STEPS[i] <= 8) { return STEPS[i]; } }
    return STEPS[STEPS.length - 1];
  }
  function rel(ms) {
    if (ms === 0) { return '0'; }
    var s = Math.abs(ms) / 1000, out = '';
    var h = Math.floor(s / 3600); s -= h * 3600;
    var m = Math.floor(s / 60); s -= m * 60;
    if (h) { out += h + 'h'; }
    if (m) { out += m + 'm'; }
    if (s || !out) { out += (Math.round(s * 1000) / 1000) + 's'; }
    return (ms < 0 ? '-' : '+') + out;
  }
  function clock(ms, withMs) {
    var s = new Date(ms).toISOString();
    return withMs ? s.substr(11, 12) : s.substr(11, 8);
  }
  function fmt(v, unit) {
    if (unit === 's') { return v >= 1 ? v.toFixed(2) + 's' : Math.round(v * 1000) + 'ms'; }
    return String(v) + (unit && unit !== 'count' && unit !== 'replicas' ? ' ' + unit : '');
  }
  // last returns the index of the last t <= x, or -1.
  function last(ts, x) {
    var lo = 0, hi = ts.length - 1, r = -1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      if (ts[mid] <= x) { r = mid; lo = mid + 1; } else { hi = mid - 1; }
    }
    return r;
  }
  function el(name, attrs, text) {
    var e = document.createElementNS(SVGNS, name);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  document.querySelectorAll('section.experiment').forEach(function (sec) {
    var data = JSON.parse(document.getElementById(sec.dataset.data).textContent);
    var plots = Array.prototype.slice.call(sec.querySelectorAll('svg.plot'));
    var axis = sec.querySelector('svg.axis');
    var view = { x0: 0, x1: PW };
    var drag = null;

    function redrawAxis() {
      while (axis.firstChild) { axis.removeChild(axis.firstChild); }
      var ml = 92, from = view.x0 / PW * data.span, to = view.x1 / PW * data.span;
      var step = niceStep(to - from);
      for (var t = Math.ceil(from / step) * step; t <= to; t += step) {
        var x = ml + (t - from) / (to - from) * PW;
        axis.appendChild(el('path', { 'class': 'tick', d: 'M' + x.toFixed(2) + ' 0v5' }));
        axis.appendChild(el('text', { x: x.toFixed(2), y: 16, 'text-anchor': 'middle' }, rel(t)));
        axis.appendChild(el('text', { 'class': 'clock', x: x.toFixed(2), y: 27, 'text-anchor': 'middle' }, clock(data.t0 + t)));
      }
    }
    function apply() {
      plots.forEach(function (p) {
        p.setAttribute('viewBox', view.x0 + ' 0 ' + (view.x1 - view.x0) + ' ' + p.dataset.h);
      });
      redrawAxis();
    }
    function toX(plot, clientX) {
      var r = plot.getBoundingClientRect();
      var f = Math.max(0, Math.min(1, (clientX - r.left) / r.width));
      return view.x0 + f * (view.x1 - view.x0);
    }
    function readout(chartId, x) {
      var h = data.charts[chartId], t = x / PW * data.span, lines = ['<b>' + rel(Math.round(t)) + ' · ' + clock(data.t0 + t, true) + ' UTC</b>'];
      if (!h) { return lines; }
      (h.series || []).forEach(function (s) {
        var i = last(s.t, t);
        if (i >= 0 && i + 1 < s.t.length && (s.t[i + 1] - t) < (t - s.t[i])) { i++; }
        if (i < 0 && s.t.length) { i = 0; }
        if (i >= 0) { lines.push(esc(s.name) + ': ' + fmt(s.v[i], h.unit === undefined ? '' : h.unit) + ' <span>(at ' + rel(s.t[i]) + ')</span>'); }
      });
      (h.states || []).forEach(function (s) {
        var i = last(s.t, t);
        if (i >= 0 && s.s) { lines.push(esc(s.name) + ': ' + esc(s.s[i]) + ' <span>(since ' + rel(s.t[i]) + ')</span>'); }
      });
      return lines;
    }
    function esc(s) { return String(s).replace(/[&<>"]/g, function (c) { return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]; }); }

    sec.querySelectorAll('svg.chart').forEach(function (chart) {
      var plot = chart.querySelector('svg.plot');
      chart.addEventListener('mousemove', function (ev) {
        var x = toX(plot, ev.clientX);
        plots.forEach(function (p) { p.querySelector('.cursor').setAttribute('d', 'M' + x + ' 0V' + p.dataset.h); });
        if (drag && drag.plot === plot) {
          var a = Math.min(drag.x, x), b = Math.max(drag.x, x);
          var sel = plot.querySelector('.sel');
          sel.setAttribute('x', a); sel.setAttribute('width', b - a);
        }
        var title = ev.target.querySelector ? ev.target.querySelector('title') : null;
        var parts = readout(chart.id, x);
        if (title) { parts.push(esc(title.textContent)); }
        tip.innerHTML = parts.join('<br>');
        tip.hidden = false;
        var left = ev.clientX + 14, top = ev.clientY + 14;
        if (left + tip.offsetWidth > window.innerWidth) { left = ev.clientX - tip.offsetWidth - 14; }
        if (top + tip.offsetHeight > window.innerHeight) { top = ev.clientY - tip.offsetHeight - 14; }
        tip.style.left = left + 'px'; tip.style.top = top + 'px';
      });
      chart.addEventListener('mouseleave', function () { tip.hidden = true; });
      chart.addEventListener('mousedown', function (ev) { ev.preventDefault(); drag = { plot: plot, x: toX(plot, ev.clientX) }; });
      chart.addEventListener('mouseup', function (ev) {
        if (!drag) { return; }
        var x = toX(plot, ev.clientX), a = Math.min(drag.x, x), b = Math.max(drag.x, x);
        plot.querySelector('.sel').setAttribute('width', 0);
        drag = null;
        if (b - a > (view.x1 - view.x0) / 200) { view = { x0: a, x1: b }; apply(); }
      });
      chart.addEventListener('dblclick', function () { view = { x0: 0, x1: PW }; apply(); });
    });
    sec.querySelector('button.reset').addEventListener('click', function () { view = { x0: 0, x1: PW }; apply(); });
    sec.dataset.ready = '1';
  });
  document.body.dataset.ready = '1';
})();
