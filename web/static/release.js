// The release form's live parts, served at /static/release.js: the host
// preview follows the cluster and the regex as they are typed (from
// GET /api/v1/targets, with the session cookie), the confirm box shows for
// a protected cluster, and choosing another app reloads its versions.
// Data reaches the page through textContent only.
(function () {
  'use strict';
  var form = document.getElementById('release-form');
  if (!form) return;
  var app = document.getElementById('app');
  var cluster = document.getElementById('cluster');
  var hosts = document.getElementById('hosts');
  var list = document.getElementById('targets');
  var excluded = document.getElementById('excluded');
  var count = document.getElementById('targets-count');
  var error = document.getElementById('targets-error');
  var confirmBox = document.getElementById('confirm-box');
  var timer = null;
  var asked = 0;

  function setText(el, value) { el.textContent = value == null ? '' : String(value); }
  function protectedCluster() {
    var o = cluster.options[cluster.selectedIndex];
    return !!(o && o.getAttribute('data-protected'));
  }
  function showConfirm() { if (confirmBox) confirmBox.hidden = !protectedCluster(); }
  function render(answer) {
    list.textContent = '';
    excluded.textContent = '';
    (answer.hosts || []).forEach(function (h) {
      var li = document.createElement('li');
      li.setAttribute('data-host', h.name);
      var name = document.createElement('strong');
      setText(name, h.name);
      var runs = document.createElement('span');
      runs.className = 'muted';
      var mine = (h.apps || []).filter(function (a) { return a.app === app.value; })[0];
      setText(runs, mine && mine.version ? 'runs ' + mine.version : 'not installed');
      li.appendChild(name);
      li.appendChild(document.createTextNode(' '));
      li.appendChild(runs);
      list.appendChild(li);
    });
    (answer.excluded || []).forEach(function (e) {
      var li = document.createElement('li');
      li.className = 'muted';
      li.setAttribute('data-host', e.host);
      setText(li, e.host + ': left out, ' + e.reason);
      excluded.appendChild(li);
    });
    setText(count, (answer.hosts || []).length + ' host(s)');
  }
  function refresh() {
    var n = ++asked;
    var q = 'cluster=' + encodeURIComponent(cluster.value);
    if (hosts.value.trim() !== '') q += '&hosts=' + encodeURIComponent(hosts.value.trim());
    fetch('/api/v1/targets?' + q, { credentials: 'same-origin', headers: { accept: 'application/json' } })
      .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
      .then(function (res) {
        if (n !== asked) return; // a newer answer is on its way
        if (res.ok) {
          error.hidden = true;
          render(res.body);
        } else {
          setText(error, (res.body && res.body.message) || 'no preview');
          error.hidden = false;
          list.textContent = '';
          excluded.textContent = '';
          setText(count, '');
        }
      })
      .catch(function () {
        if (n !== asked) return;
        setText(error, 'the preview could not be loaded');
        error.hidden = false;
      });
  }
  function later() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  }
  hosts.addEventListener('input', later);
  cluster.addEventListener('change', function () { showConfirm(); refresh(); });
  app.addEventListener('change', function () {
    var q = 'app=' + encodeURIComponent(app.value) + '&cluster=' + encodeURIComponent(cluster.value) + '&hosts=' + encodeURIComponent(hosts.value);
    window.location.assign('/release?' + q);
  });
  showConfirm();
})();
