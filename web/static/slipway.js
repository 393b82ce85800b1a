// Every page's small helpers, served at /static/slipway.js (the pages'
// Content-Security-Policy allows no inline script): relative times beside
// the absolute ones, and copy buttons. Pages work in full without it.
(function () {
  'use strict';
  function ago(ms) {
    var s = Math.round((Date.now() - ms) / 1000);
    var future = s < 0;
    s = Math.abs(s);
    var text = s < 60 ? s + 's' : s < 3600 ? Math.round(s / 60) + 'm' : s < 86400 ? Math.round(s / 3600) + 'h' : Math.round(s / 86400) + 'd';
    return future ? 'in ' + text : text + ' ago';
  }
  function refreshTimes() {
    document.querySelectorAll('time[data-ms]').forEach(function (t) {
      var ms = Number(t.getAttribute('data-ms'));
      if (!isNaN(ms) && ms > 0) {
        if (!t.title) t.title = t.textContent;
        t.textContent = ago(ms);
      }
    });
  }
  refreshTimes();
  setInterval(refreshTimes, 15000);
  document.querySelectorAll('button[data-copy]').forEach(function (b) {
    b.hidden = false;
    b.addEventListener('click', function () {
      var text = b.getAttribute('data-copy');
      if (navigator.clipboard) navigator.clipboard.writeText(text).then(function () { b.textContent = 'copied'; });
    });
  });
})();
