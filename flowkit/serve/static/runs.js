// flowkit serve: the runs list refreshes itself when a run starts, progresses or ends.
(function () {
  'use strict';
  var source = new EventSource('/events');
  source.addEventListener('changed', function () {
    var active = document.activeElement;
    if (active && (active.tagName === 'INPUT' || active.tagName === 'SELECT')) { return; }
    source.close();
    location.reload();
  });
  document.body.dataset.ready = '1';
})();
