// The report page: filter the table (search box, status chips, or "#status=failed" /
// "#filter=text" in the URL) and toggle the graphs between natural size and fit-to-width.
// Sets body[data-ready] when done.
(function () {
  var rows = Array.prototype.slice.call(document.querySelectorAll('#step-table tbody tr[data-step]'));
  function more(tr) {  // the row under a step's: its traceback and log
    var next = tr.nextElementSibling;
    return next && next.classList.contains('more') ? next : null;
  }
  var box = document.getElementById('filter'), shown = document.getElementById('shown');
  var status = '';
  function apply() {
    var q = box.value.trim().toLowerCase(), n = 0;
    rows.forEach(function (tr) {
      var extra = more(tr);
      var text = tr.textContent + (extra ? extra.textContent : '');
      var ok = (!status || tr.dataset.status === status) &&
               (!q || text.toLowerCase().indexOf(q) >= 0);
      tr.hidden = !ok;
      if (extra) { extra.hidden = !ok; }
      if (ok) { n++; }
    });
    shown.textContent = n + ' of ' + rows.length + ' steps shown';
  }
  function fromHash() {
    var h = decodeURIComponent(location.hash.slice(1));
    if (h.indexOf('status=') === 0) { status = h.slice(7); apply(); }
    else if (h.indexOf('filter=') === 0) { box.value = h.slice(7); apply(); }
  }
  box.addEventListener('input', apply);
  document.querySelectorAll('#counts button').forEach(function (b) {
    b.addEventListener('click', function () { status = b.dataset.status; apply(); });
  });
  document.getElementById('fit').addEventListener('click', function () {
    document.querySelectorAll('svg.dag').forEach(function (g) { g.classList.toggle('fit'); });
  });
  // a big graph opens on its failures: bring the first failed step into its box's view
  var focus = document.getElementById('focus-box');
  var failed = focus && focus.querySelector('g.node[data-status="failed"], ' +
    'g.node[data-status="timed_out"], g.node[data-status="interrupted"]');
  if (failed) {
    var fb = focus.getBoundingClientRect(), nb = failed.getBoundingClientRect();
    if (nb.right > fb.right) { focus.scrollLeft += nb.right - fb.right + 24; }
    if (nb.bottom > fb.bottom) { focus.scrollTop += nb.bottom - fb.bottom + 24; }
  }
  window.addEventListener('hashchange', fromHash);
  apply();
  fromHash();
  document.body.dataset.ready = '1';
})();
