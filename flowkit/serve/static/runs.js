// flowkit serve: the runs list refreshes itself when a run starts, progresses or ends
// (at most every two seconds, keeping the scroll position, never while you type a filter).
(function () {
  'use strict';
  var KEY = 'flowkit-runs-scroll';
  var saved = sessionStorage.getItem(KEY);
  if (saved !== null) { window.scrollTo(0, +saved); sessionStorage.removeItem(KEY); }
  var pending = false, last = Date.now();
  function reload() {
    var active = document.activeElement;
    if (active && (active.tagName === 'INPUT' || active.tagName === 'SELECT')) { return; }
    sessionStorage.setItem(KEY, String(window.scrollY));
    location.reload();
  }
  var source = new EventSource('/events');
  source.addEventListener('changed', function () {
    if (pending) { return; }
    pending = true;
    setTimeout(function () { pending = false; reload(); }, Math.max(0, 2000 - (Date.now() - last)));
  });
  document.body.dataset.ready = '1';
})();
