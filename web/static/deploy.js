// The deploy page's live updates, served at /static/deploy.js: the pages'
// Content-Security-Policy allows no inline script. The deploy's id comes
// from the heading's data-deploy-id.
// Live updates: every message is a JSON deploy::DeployEvent. Data only ever
// reaches the page through textContent and attributes, never as markup.
(function () {
  'use strict';
  var TERMINAL = ['succeeded', 'failed', 'partial', 'cancelled'];
  var heading = document.getElementById('deploy');
  if (!heading) return;
  var ID = Number(heading.getAttribute('data-deploy-id'));
  var badge = document.getElementById('status');
  var live = document.getElementById('live');
  var table = document.getElementById('hosts');
  var tbody = table.querySelector('tbody');
  var APP = table.getAttribute('data-app') || '';
  var ROOTS = {};
  try { ROOTS = JSON.parse(table.getAttribute('data-roots') || '{}') || {}; } catch (e) { ROOTS = {}; }
  // Per host: the phase it is in and since when, and what earlier phases took.
  var timing = {};

  function setText(el, value) { el.textContent = value == null ? '' : String(value); }
  // Class names come from data: keep only what a state name can hold.
  function token(value) { return String(value == null ? 'unknown' : value).replace(/[^a-z0-9_]/g, '') || 'unknown'; }
  function fmtTime(ms) {
    var d = new Date(ms);
    return typeof ms === 'number' && !isNaN(d.getTime()) ? d.toISOString().replace(/\.\d{3}Z$/, 'Z') : '';
  }
  function cell(tr, cls) {
    var td = document.createElement('td');
    td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function hostRow(host) {
    var tr = document.getElementById('host-' + host);
    if (tr) return tr;
    var empty = document.getElementById('no-hosts');
    if (empty) empty.remove();
    tr = document.createElement('tr');
    tr.id = 'host-' + host;
    tr.setAttribute('data-host', host);
    setText(cell(tr, 'host'), host);
    var link = tr.querySelector('.host');
    var cluster = heading.getAttribute('data-cluster');
    if (cluster) {
      var a = document.createElement('a');
      a.href = '/hosts/' + encodeURIComponent(cluster) + '/' + encodeURIComponent(host) + '?app=' + encodeURIComponent(APP);
      setText(a, host);
      link.textContent = '';
      link.appendChild(a);
    }
    var phase = document.createElement('span');
    phase.className = 'phase';
    cell(tr, '').appendChild(phase);
    cell(tr, 'failed-phase');
    cell(tr, 'rolled-back');
    cell(tr, 'transfer muted');
    var msg = document.createElement('div');
    msg.className = 'message-text';
    cell(tr, 'message').appendChild(msg);
    cell(tr, 'durations muted');
    cell(tr, 'updated muted');
    tbody.appendChild(tr);
    return tr;
  }
  function updateProgress() {
    var phases = tbody.querySelectorAll('.phase');
    var ok = 0, failed = 0, unreachable = 0;
    phases.forEach(function (p) {
      var v = p.getAttribute('data-phase');
      if (v === 'done' || v === 'skipped') ok++;
      if (v === 'failed' || v === 'timed_out') failed++;
      if (v === 'unreachable') unreachable++;
    });
    var text = phases.length === 0 ? 'no hosts' : ok + '/' + phases.length + ' done';
    if (failed > 0) text += ', ' + failed + ' failed';
    if (unreachable > 0) text += ', ' + unreachable + ' unreachable';
    setText(document.getElementById('progress'), text);
    var bar = document.getElementById('progress-bar');
    if (bar) { bar.max = Math.max(phases.length, 1); bar.value = ok; }
  }
  // As views::transfer writes it: decimal units, peers and reuse apart.
  function fmtBytes(n) {
    var units = ['kB', 'MB', 'GB', 'TB', 'PB'];
    if (n < 1000) return n + ' B';
    var v = n / 1000, u = 0;
    while (v >= 999.95 && u < units.length - 1) { v /= 1000; u++; }
    return v.toFixed(1) + ' ' + units[u];
  }
  function fmtTransfer(t) {
    if (!t || typeof t.bytes_downloaded !== 'number') return null;
    var text = fmtBytes(t.bytes_downloaded);
    if (t.bytes_from_peers > 0) text += ' (' + fmtBytes(t.bytes_from_peers) + ' from peers)';
    if (t.bytes_reused > 0) text += ', ' + fmtBytes(t.bytes_reused) + ' reused';
    return text;
  }
  function fmtSecs(ms) {
    ms = Math.max(0, ms);
    return ms < 60000 ? (ms / 1000).toFixed(1) + 's' : Math.floor(ms / 60000) + 'm ' + String(Math.floor((ms % 60000) / 1000)).padStart(2, '0') + 's';
  }
  // Durations per phase, live: a phase lasts until the host's next report.
  function onTiming(tr, host, phase, at) {
    if (typeof at !== 'number') return;
    var t = timing[host];
    if (!t) {
      t = timing[host] = { phase: phase, since: at, first: at, parts: [] };
    } else if (t.phase !== phase) {
      t.parts.push(t.phase + ' ' + fmtSecs(at - t.since));
      t.phase = phase;
      t.since = at;
    }
    var parts = t.parts.slice();
    if (parts.length > 0) parts.push('total ' + fmtSecs(at - t.first));
    var cellEl = tr.querySelector('.durations');
    // Keep what the server rendered until the stream knows more.
    if (cellEl && parts.length > 0) setText(cellEl, parts.join(' · '));
  }
  function showSsh(tr, host, failed) {
    var line = tr.querySelector('.ssh-line');
    if (!failed || !ROOTS[host] || !APP) return;
    if (line) return;
    line = document.createElement('div');
    line.className = 'ssh-line';
    var code = document.createElement('code');
    code.className = 'ssh';
    setText(code, 'ssh ' + host + ' tail -n 200 ' + ROOTS[host] + '/apps/' + APP + '/log/' + APP + '.log');
    line.appendChild(code);
    tr.querySelector('.message').appendChild(line);
  }
  function showActions(status) {
    var terminal = TERMINAL.indexOf(status) >= 0;
    var failed = tbody.querySelectorAll('.phase[data-phase=failed], .phase[data-phase=timed_out], .phase[data-phase=unreachable]').length;
    var toggle = function (id, show) { var f = document.getElementById(id); if (f) f.hidden = !show; };
    toggle('retry-form', terminal && failed > 0);
    toggle('cancel-form', !terminal);
    if (terminal) toggle('continue-form', false);
    var rollback = document.getElementById('rollback-form');
    if (rollback && terminal && heading.getAttribute('data-action') === '') rollback.hidden = false;
  }
  function onHost(ev) {
    if (typeof ev.host !== 'string' || ev.host === '') return;
    var tr = hostRow(ev.host);
    var phase = token(ev.phase);
    var badgeEl = tr.querySelector('.phase');
    badgeEl.className = 'phase phase-' + phase;
    badgeEl.setAttribute('data-phase', phase);
    setText(badgeEl, phase);
    setText(tr.querySelector('.failed-phase'), ev.failed_phase);
    setText(tr.querySelector('.rolled-back'), ev.rolled_back ? 'yes' : 'no');
    // A row keeps its transfer: only the extracting event carries it.
    var transfer = fmtTransfer(ev.transfer);
    if (transfer !== null) setText(tr.querySelector('.transfer'), transfer);
    setText(tr.querySelector('.message-text'), ev.message);
    var pre = tr.querySelector('pre.log');
    if (typeof ev.log_tail === 'string' && ev.log_tail.trim() !== '') {
      if (!pre) {
        pre = document.createElement('pre');
        pre.className = 'log';
        tr.querySelector('.message').appendChild(pre);
      }
      setText(pre, ev.log_tail);
    } else if (pre) {
      pre.remove();
    }
    setText(tr.querySelector('.updated'), fmtTime(ev.updated_at));
    onTiming(tr, ev.host, phase, ev.updated_at);
    showSsh(tr, ev.host, phase === 'failed' || phase === 'timed_out');
    updateProgress();
  }
  function onStatus(ev) {
    var status = token(ev.status);
    badge.className = 'badge status-' + status;
    badge.setAttribute('data-status', status);
    setText(badge, status);
    if (ev.version) {
      var version = document.getElementById('version');
      version.className = '';
      version.removeAttribute('title');
      setText(version, ev.version);
    }
    var error = document.getElementById('deploy-error');
    setText(error, ev.error);
    error.hidden = !ev.error;
    showActions(status);
    if (TERMINAL.indexOf(status) >= 0) {
      var finished = document.getElementById('finished');
      if (finished && finished.textContent.trim() === '—') setText(finished, fmtTime(Date.now()));
      es.close();
      setText(live, '');
    }
  }
  function onEvent(message) {
    var ev;
    try { ev = JSON.parse(message.data); } catch (e) { return; }
    if (!ev || ev.deploy_id !== ID) return;
    if (ev.kind === 'host') onHost(ev);
    else if (ev.kind === 'status') onStatus(ev);
  }

  if (TERMINAL.indexOf(badge.getAttribute('data-status')) >= 0) return;
  var es = new EventSource('/api/v1/deploys/' + ID + '/stream');
  es.onopen = function () { setText(live, 'live'); };
  es.onerror = function () {
    setText(live, es.readyState === EventSource.CLOSED ? 'disconnected — reload the page' : 'reconnecting…');
  };
  es.onmessage = onEvent;
  // Also accept events sent under their kind's name.
  es.addEventListener('host', onEvent);
  es.addEventListener('status', onEvent);
})();
