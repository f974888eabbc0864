// flowkit serve: a run page kept up to date from the run's event stream.
// The server sends a "snapshot" (every row), then "patch" events (changed rows only). Rows are
// kept here; the table shows one page of them, the timeline draws one bar per attempt.
// Text from the journal is only ever set with textContent or escaped before use.
(function () {
  'use strict';
  var cfg = JSON.parse(document.getElementById('config').textContent);
  var PAGE = 100;
  var rows = [], pos = {}, run = null;
  var page = 0, status = '', query = '';
  var selected = null, logSource = null, dirty = false, lastEvent = 0;
  var nodes = {};
  document.querySelectorAll('#graph-box g.node').forEach(function (g) { nodes[g.dataset.step] = g; });

  function $(id) { return document.getElementById(id); }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c];
    });
  }
  function dur(s) {
    if (s == null) { return ''; }
    if (s < 1) { return Math.round(s * 1000) + 'ms'; }
    if (s < 60) { return s.toFixed(2) + 's'; }
    if (s < 3600) { return Math.floor(s / 60) + 'm ' + Math.round(s % 60) + 's'; }
    return Math.floor(s / 3600) + 'h ' + Math.round((s % 3600) / 60) + 'm';
  }
  function now() { return Date.now() / 1000; }
  function reindex() { pos = {}; rows.forEach(function (r, i) { pos[r.name] = i; }); }

  // --- the model --------------------------------------------------------------------------------
  function setSnapshot(data) {
    run = data.run;
    rows = data.steps;
    reindex();
    busy = {};
    rows.forEach(function (r) { updateNode(r, null); });
    render();
  }
  function patch(data) {
    run = data.run;
    var added = false;
    data.steps.forEach(function (r) {
      var i = pos[r.name], old = i !== undefined ? rows[i] : null;
      if (i !== undefined) {
        rows[i] = r;
      } else if (r.parent && pos[r.parent] !== undefined) {
        var at = pos[r.parent] + 1;
        while (at < rows.length && rows[at].parent === r.parent) { at++; }
        rows.splice(at, 0, r);
        added = true;
        reindex();
      } else {
        rows.push(r);
        pos[r.name] = rows.length - 1;
        added = true;
      }
      updateNode(r, old);
    });
    if (added) { $('step-count').textContent = rows.length; }
    dirty = true;
  }
  // A fan-out step is one node: while it waits for its instances it shows "running" if one is.
  var busy = {};  // step -> its instances now running
  function updateNode(r, old) {
    if (r.parent) {
      var delta = (r.status === 'running' ? 1 : 0) - (old && old.status === 'running' ? 1 : 0);
      if (delta) {
        busy[r.parent] = (busy[r.parent] || 0) + delta;
        if (pos[r.parent] !== undefined) { updateNode(rows[pos[r.parent]]); }
      }
      return;
    }
    var g = nodes[r.name];
    if (!g) { return; }
    var shown = r.status === 'pending' && busy[r.name] > 0 ? 'running' : r.status;
    g.setAttribute('class', 'node st-' + shown);
    g.dataset.status = shown;
    var t = g.querySelector('title');
    if (t) { t.textContent = r.name + ' — ' + r.status + (r.reason ? '\n' + r.reason : ''); }
  }

  // --- rendering --------------------------------------------------------------------------------
  var BIG = 2000, drawn = 0, timelineDirty = false;
  function render() {
    dirty = false;
    renderHeader();
    renderTable();
    // a large run's timeline is redrawn at most once a second (the 1 s timer catches up)
    if (rows.length < BIG || now() - drawn >= 1) { renderTimeline(); } else { timelineDirty = true; }
    if (selected) { renderPanel(); }
    document.body.dataset.ready = '1';
  }
  function renderHeader() {
    var st = $('run-status');
    st.textContent = run.status;
    st.className = 'badge st-' + run.status;
    var end = run.ended || (run.running ? now() : lastEnd());
    $('duration').textContent = run.started && end ? dur(Math.max(0, end - run.started)) : '—';
    $('sessions').textContent = run.sessions;
    $('step-count').textContent = rows.length;
    var counts = {};
    rows.forEach(function (r) { counts[r.status] = (counts[r.status] || 0) + 1; });
    var box = $('counts');
    box.textContent = '';
    Object.keys(counts).sort().forEach(function (s) {
      var b = document.createElement('button');
      b.type = 'button';
      b.className = 'st-' + s + (status === s ? ' on' : '');
      b.dataset.status = s;
      b.textContent = counts[s] + ' ' + s;
      box.appendChild(b);
    });
    if (status) {
      var all = document.createElement('button');
      all.type = 'button';
      all.dataset.status = '';
      all.textContent = 'all';
      box.appendChild(all);
    }
    var cancel = $('cancel');
    if (cancel) { cancel.hidden = !run.running; }
    var dmg = $('damaged');
    dmg.hidden = !run.damaged.length;
    dmg.textContent = run.damaged.join('; ');
  }
  function lastEnd() {
    var t = null;
    rows.forEach(function (r) { if (r.end && (t === null || r.end > t)) { t = r.end; } });
    return t;
  }
  function matching() {
    var q = query.toLowerCase();
    return rows.filter(function (r) {
      if (status && r.status !== status) { return false; }
      if (!q) { return true; }
      return (r.name + ' ' + r.status + ' ' + r.reason + ' ' + r.error_type + ' ' +
              r.error_message).toLowerCase().indexOf(q) >= 0;
    });
  }
  function renderTable() {
    var shown = matching();
    var pages = Math.max(1, Math.ceil(shown.length / PAGE));
    page = Math.min(page, pages - 1);
    var body = document.querySelector('#step-table tbody');
    var frag = document.createDocumentFragment();
    shown.slice(page * PAGE, (page + 1) * PAGE).forEach(function (r) {
      var tr = document.createElement('tr');
      tr.dataset.step = r.name;
      tr.dataset.status = r.status;
      if (r.parent) { tr.className = 'instance'; }
      if (r.name === selected) { tr.className += ' selected'; }
      var err = r.error_type ? r.error_type + ': ' + r.error_message : '';
      var last = r.bars && r.bars.length ? r.bars[r.bars.length - 1] : null;
      var took = r.duration != null ? dur(r.duration) :
        (r.status === 'running' && last && last.start ? dur(Math.max(0, now() - last.start)) + '…' : '');
      var cells = [pos[r.name] + 1, r.name, null, r.attempts == null ? '' : r.attempts,
                   took, r.worker || '', r.reason + (r.earlier ? ' (earlier session)' : ''), err];
      var classes = ['num', 'name', 'status', 'num attempts', 'num dur', 'worker', 'reason', 'error'];
      cells.forEach(function (c, i) {
        var td = document.createElement('td');
        td.className = classes[i];
        if (c === null) {
          var badge = document.createElement('span');
          badge.className = 'badge st-' + r.status;
          badge.textContent = r.status;
          td.appendChild(badge);
        } else {
          td.textContent = c;
        }
        tr.appendChild(td);
      });
      frag.appendChild(tr);
    });
    body.textContent = '';
    body.appendChild(frag);
    $('shown').textContent = shown.length + ' of ' + rows.length + ' steps';
    $('page').textContent = 'page ' + (page + 1) + ' of ' + pages;
    $('prev').disabled = page === 0;
    $('next').disabled = page >= pages - 1;
  }

  function niceStep(span) {
    var raw = span > 0 ? span / 8 : 1, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var m = [1, 2, 5, 10].find(function (k) { return k * mag >= raw; });
    return m * mag;
  }
  function renderTimeline() {
    drawn = now();
    timelineDirty = false;
    var box = $('timeline-box');
    var t = now();
    var spans = [];
    rows.forEach(function (r) {
      if (!r.bars || !r.bars.length || r.earlier) { return; }
      var b0 = r.bars[0], bn = r.bars[r.bars.length - 1];
      if (b0.start == null) { return; }
      var end = bn.end != null ? bn.end + (bn.status === 'failed' || bn.status === 'timed_out' ? bn.delay : 0) : t;
      spans.push({row: r, start: b0.start, end: end});
    });
    if (!spans.length) {
      box.innerHTML = '<p class="hint" id="timeline-empty" style="margin:8px">No attempt in ' +
        'the latest session yet.</p>';
      return;
    }
    var t0 = run.started || spans[0].start, t1 = t0 + 1e-3;
    spans.forEach(function (s) { t0 = Math.min(t0, s.start); t1 = Math.max(t1, s.end); });
    if (run.running) { t1 = Math.max(t1, t); }
    spans.sort(function (a, b) { return a.start - b.start || a.end - b.end; });
    var lanes = [], laneOf = [];
    spans.forEach(function (s) {
      for (var i = 0; i < lanes.length; i++) {
        if (s.start >= lanes[i]) { lanes[i] = s.end; laneOf.push(i); return; }
      }
      lanes.push(s.end);
      laneOf.push(lanes.length - 1);
    });
    var W = Math.max(600, box.clientWidth - 20), L = 8, PW = W - 2 * L, PITCH = 20, H = 14, AX = 22;
    var scale = PW / (t1 - t0);
    var height = AX + lanes.length * PITCH + 8;
    var out = ['<svg id="attempts-svg" width="' + W + '" height="' + height + '" viewBox="0 0 ' +
               W + ' ' + height + '"><defs><pattern id="hatch" width="6" height="6" ' +
               'patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" ' +
               'height="6" fill="#f5f5f5"/><line x1="0" y1="0" x2="0" y2="6" stroke="#bbb" ' +
               'stroke-width="2"/></pattern></defs><g class="axis">'];
    var step = niceStep(t1 - t0);
    for (var k = 0; k * step <= t1 - t0 + 1e-9; k++) {
      var x = L + k * step * scale;
      out.push('<line x1="' + x.toFixed(1) + '" y1="' + (AX - 4) + '" x2="' + x.toFixed(1) +
               '" y2="' + height + '"/><text x="' + (x + 2).toFixed(1) + '" y="' + (AX - 8) +
               '">+' + esc(dur(k * step)) + '</text>');
    }
    out.push('</g>');
    spans.forEach(function (s, i) {
      var r = s.row, y = AX + laneOf[i] * PITCH, bars = r.bars;
      bars.forEach(function (b, j) {
        var end = b.end != null ? b.end : t;
        var bx = L + (b.start - t0) * scale, bw = Math.max(2, (end - b.start) * scale);
        var label = bars.length > 1 || b.n > 1 ? r.name + ' #' + b.n : r.name;
        var tip = label + ' — ' + b.status + ', ' + dur(Math.max(0, end - b.start)) +
                  (b.error ? '\n' + b.error : '');
        out.push('<rect class="bar st-' + esc(b.status) + '" data-step="' + esc(r.name) +
                 '" data-attempt="' + b.n + '" x="' + bx.toFixed(1) + '" y="' + y + '" width="' +
                 bw.toFixed(1) + '" height="' + H + '" rx="2"><title>' + esc(tip) + '</title></rect>');
        if (bw > 46) {
          var chars = Math.floor((bw - 6) / 6.2);
          var text = label.length > chars ? label.slice(0, Math.max(1, chars - 1)) + '…' : label;
          out.push('<text x="' + (bx + 3).toFixed(1) + '" y="' + (y + 11) + '">' + esc(text) + '</text>');
        }
        if ((b.status === 'failed' || b.status === 'timed_out') && b.delay > 0 && b.end != null) {
          var next = bars[j + 1];
          var wEnd = next && next.start != null ? next.start : Math.min(b.end + b.delay, t);
          var wx = L + (b.end - t0) * scale, ww = Math.max(1, (wEnd - b.end) * scale);
          out.push('<rect class="wait" data-step="' + esc(r.name) + '" data-attempt="' + b.n +
                   '" x="' + wx.toFixed(1) + '" y="' + (y + 2) + '" width="' + ww.toFixed(1) +
                   '" height="' + (H - 4) + '"><title>' + esc(r.name + ': waiting ' +
                   dur(b.delay) + ' before attempt ' + (b.n + 1)) + '</title></rect>');
        }
      });
    });
    out.push('</svg>');
    box.innerHTML = out.join('');
  }

  // --- the side panel ---------------------------------------------------------------------------
  function openPanel(name) {
    if (pos[name] === undefined) { return; }
    if (selected !== name) {
      selected = name;
      if (logSource) { logSource.close(); }
      $('panel-log').textContent = '';
      logSource = new EventSource(cfg.log + '?name=' + encodeURIComponent(name));
      logSource.addEventListener('log', function (ev) {
        var d = JSON.parse(ev.data), pre = $('panel-log');
        if (d.first && !d.text) { pre.textContent = '(nothing printed or logged yet)'; return; }
        if (pre.dataset.empty !== 'no') { pre.textContent = ''; pre.dataset.empty = 'no'; }
        pre.appendChild(document.createTextNode(d.text));
        if (pre.textContent.length > 400000) { pre.textContent = pre.textContent.slice(-300000); }
        pre.scrollTop = pre.scrollHeight;
      });
      $('panel-log').dataset.empty = 'yes';
    }
    $('panel').hidden = false;
    document.body.classList.add('panel-open');
    renderPanel();
    renderTable();
    if (location.hash !== '#step=' + encodeURIComponent(name)) {
      history.replaceState(null, '', '#step=' + encodeURIComponent(name));
    }
  }
  function closePanel() {
    selected = null;
    if (logSource) { logSource.close(); logSource = null; }
    $('panel').hidden = true;
    document.body.classList.remove('panel-open');
    history.replaceState(null, '', location.pathname + location.search);
    renderTable();
  }
  function renderPanel() {
    var r = rows[pos[selected]];
    if (!r) { return; }
    $('panel-title').textContent = r.name;
    $('panel-link').href = cfg.step + '?name=' + encodeURIComponent(r.name);
    var facts = [['Status', r.status], ['Reason', r.reason || '—'],
                 ['Attempts', r.attempts == null ? '—' : r.attempts],
                 ['Duration', r.duration == null ? '—' : dur(r.duration)],
                 ['Worker', r.worker || '—']];
    var dl = $('panel-facts');
    dl.textContent = '';
    facts.forEach(function (f) {
      var dt = document.createElement('dt'), dd = document.createElement('dd');
      dt.textContent = f[0];
      dd.textContent = f[1];
      dl.appendChild(dt);
      dl.appendChild(dd);
    });
    var ol = $('panel-attempts');
    ol.textContent = '';
    (r.bars || []).forEach(function (b) {
      var li = document.createElement('li');
      var took = b.end != null ? ', ' + dur(Math.max(0, b.end - b.start)) : ' for ' +
                 dur(Math.max(0, now() - b.start));
      li.textContent = '#' + b.n + ' ' + b.status + took +
        (b.worker ? ' on ' + b.worker : '') + (b.error ? ' — ' + b.error : '') +
        (b.delay ? '; then waited ' + dur(b.delay) : '');
      li.dataset.attempt = b.n;
      ol.appendChild(li);
    });
    var box = $('panel-error');
    box.textContent = '';
    if (r.error_type || r.error_message) {
      var h = document.createElement('h3');
      h.textContent = 'Error';
      var p = document.createElement('p');
      var t = document.createElement('span');
      t.className = 'etype';
      t.textContent = r.error_type;
      p.appendChild(t);
      p.appendChild(document.createTextNode(': ' + r.error_message));
      box.appendChild(h);
      box.appendChild(p);
      if (r.traceback) {
        var pre = document.createElement('pre');
        pre.id = 'panel-traceback';
        pre.textContent = r.user_traceback || r.traceback;  // the full one: the step's page
        box.appendChild(pre);
      }
    }
  }

  // --- wiring -----------------------------------------------------------------------------------
  $('filter').addEventListener('input', function () { query = this.value; page = 0; renderTable(); });
  $('prev').addEventListener('click', function () { page = Math.max(0, page - 1); renderTable(); });
  $('next').addEventListener('click', function () { page++; renderTable(); });
  $('counts').addEventListener('click', function (ev) {
    var b = ev.target.closest('button');
    if (b) { status = b.dataset.status; page = 0; render(); }
  });
  document.querySelector('#step-table tbody').addEventListener('click', function (ev) {
    var tr = ev.target.closest('tr');
    if (tr && tr.dataset.step) { openPanel(tr.dataset.step); }
  });
  $('graph-box').addEventListener('click', function (ev) {
    var g = ev.target.closest('g.node');
    if (g) { ev.preventDefault(); openPanel(g.dataset.step); }
  });
  $('timeline-box').addEventListener('click', function (ev) {
    var b = ev.target.closest('rect[data-step]');
    if (b) { openPanel(b.dataset.step); }
  });
  $('panel-close').addEventListener('click', closePanel);
  var cancel = $('cancel');
  if (cancel) {
    cancel.addEventListener('click', function () {
      if (!window.confirm('Cancel this run? Running steps get their grace period.')) { return; }
      fetch(cfg.cancel, {method: 'POST', headers: {'X-Flowkit-Action': 'cancel'},
                         credentials: 'same-origin'})
        .then(function (r) { return r.json(); })
        .then(function (d) { $('live').textContent = d.message || d.error; });
    });
  }

  var live = $('live');
  var source = new EventSource(cfg.events);
  source.addEventListener('snapshot', function (ev) {
    setSnapshot(JSON.parse(ev.data));
    lastEvent = now();
    live.className = 'hint';
    live.textContent = run.running ? 'live: following the run as it goes' : 'not running';
    var h = decodeURIComponent(location.hash.slice(1));
    if (h.indexOf('step=') === 0 && !selected) { openPanel(h.slice(5)); }
  });
  source.addEventListener('patch', function (ev) {
    patch(JSON.parse(ev.data));
    lastEvent = now();
    live.className = 'hint';
    live.textContent = run.running ? 'live: following the run as it goes' : 'the run has ended';
  });
  source.addEventListener('reload', function () { source.close(); location.reload(); });
  source.onerror = function () {
    live.className = 'hint lost';
    live.textContent = 'connection lost: retrying…';
  };
  setInterval(function () { if (dirty) { render(); } }, 150);
  setInterval(function () {
    if (run && (run.running || timelineDirty) && !dirty) {
      renderHeader();
      renderTimeline();
      if (run.running) { renderTable(); }
    }
  }, 1000);
})();
