// The build page's live log, served at /static/build.js: the pages'
// Content-Security-Policy allows no inline script. The build's id comes
// from the heading's data-build-id. While the build is queued or running,
// the script asks GET /api/v1/builds/{id} (the session cookie
// authenticates it) every second and puts the log and status in place.
// Data only ever reaches the page through textContent and attributes,
// never as markup.
(function () {
  'use strict';
  var TERMINAL = ['succeeded', 'failed'];
  var heading = document.getElementById('build');
  if (!heading) return;
  var ID = Number(heading.getAttribute('data-build-id'));
  if (!(ID > 0)) return;
  var badge = document.getElementById('build-status');
  var live = document.getElementById('build-live');
  var log = document.getElementById('build-log');

  function setText(el, value) { if (el) el.textContent = value == null ? '' : String(value); }
  // Class names come from data: keep only what a state name can hold.
  function token(value) { return String(value == null ? 'unknown' : value).replace(/[^a-z0-9_]/g, '') || 'unknown'; }
  function fmtTime(ms) {
    var d = new Date(ms);
    return typeof ms === 'number' && !isNaN(d.getTime()) ? d.toISOString().replace(/\.\d{3}Z$/, 'Z') : '';
  }
  function took(from, to) {
    var s = Math.max(0, Math.floor((to - from) / 1000));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    s = s % 60;
    var parts = [];
    if (h) parts.push(h + 'h');
    if (m) parts.push(m + 'm');
    if (s || parts.length === 0) parts.push(s + 's');
    return parts.join(' ');
  }
  function mib(bytes) { return (bytes / 1048576).toFixed(1) + ' MiB'; }

  function show(b) {
    if (typeof b.log === 'string' && b.log !== log.textContent) {
      // Follow the end of the log unless the reader scrolled up.
      var atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      setText(log, b.log);
      if (atEnd) log.scrollTop = log.scrollHeight;
    }
    var status = token(b.status);
    badge.className = 'badge status-' + status;
    badge.setAttribute('data-status', status);
    setText(badge, status);
    var error = document.getElementById('build-error');
    if (error) {
      setText(error, b.error);
      error.hidden = !b.error;
    }
    if (typeof b.finished_at === 'number') {
      setText(document.getElementById('build-finished'), fmtTime(b.finished_at));
      if (typeof b.created_at === 'number') setText(document.getElementById('build-took'), took(b.created_at, b.finished_at));
    }
    if (typeof b.message === 'string') setText(document.getElementById('build-message'), b.message);
    if (typeof b.author === 'string') setText(document.getElementById('build-author'), b.author);
    if (b.artifact && typeof b.artifact.size === 'number') setText(document.getElementById('build-size'), mib(b.artifact.size));
    return TERMINAL.indexOf(status) >= 0;
  }

  function poll() {
    fetch('/api/v1/builds/' + ID, { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
      .then(function (resp) {
        if (resp.status === 401) { setText(live, 'signed out — reload the page'); return null; }
        if (!resp.ok) throw new Error('HTTP ' + resp.status);
        return resp.json();
      })
      .then(function (b) {
        if (b === null) return;
        if (!b || b.id !== ID) throw new Error('not this build');
        if (show(b)) { setText(live, ''); return; }
        setText(live, 'live');
        setTimeout(poll, 1000);
      })
      .catch(function () {
        setText(live, 'reconnecting…');
        setTimeout(poll, 3000);
      });
  }

  if (TERMINAL.indexOf(badge.getAttribute('data-status')) >= 0) return;
  poll();
})();
