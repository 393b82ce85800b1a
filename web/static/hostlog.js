// The host page's log follower, served at /static/hostlog.js (the pages'
// Content-Security-Policy allows no inline script). It asks the dashboard
// for the log's next piece every ~1.5 s (GET data-follow?offset=N, same
// origin, the visitor's session) and appends it as text only, keeping the
// view at the bottom if it was there. Its state shows in #log-state:
// following, host not answering (it keeps asking, slower), or stopped.
(function () {
  'use strict';
  var pre = document.getElementById('app-log');
  var stateEl = document.getElementById('log-state');
  var toggle = document.getElementById('log-toggle');
  if (!pre || !stateEl) return;
  var url = pre.getAttribute('data-follow');
  if (!url || url.charAt(0) !== '/') return;
  var raw = pre.getAttribute('data-offset');
  var offset = raw !== null && /^[0-9]+$/.test(raw) ? Number(raw) : null;
  var EVERY = 1500;
  var SLOW = 5000;
  // The page keeps at most this much text, dropping the oldest.
  var KEEP = 512 * 1024;
  var timer = null;
  var busy = false;
  var stopped = false;

  function setState(state, words) {
    stateEl.setAttribute('data-state', state);
    stateEl.textContent = words;
  }
  function atBottom() {
    return pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
  }
  function append(text) {
    if (!text) return;
    var stick = atBottom();
    pre.appendChild(document.createTextNode(text));
    if (pre.textContent.length > KEEP) {
      pre.textContent = pre.textContent.slice(-KEEP);
    }
    if (stick) pre.scrollTop = pre.scrollHeight;
  }
  function later(ms) {
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(tick, ms);
  }
  function stop(words) {
    stopped = true;
    clearTimeout(timer);
    setState('stopped', words);
    if (toggle) toggle.textContent = 'Follow';
  }
  function tick() {
    if (stopped || busy) return;
    // A hidden tab does not ask (every read is audited): it resumes when
    // shown again.
    if (document.hidden) return;
    busy = true;
    var q = offset === null ? '' : '?offset=' + offset;
    fetch(url + q, { credentials: 'same-origin', headers: { Accept: 'application/json' }, cache: 'no-store' })
      .then(function (r) {
        return r.json().then(function (body) { return { status: r.status, body: body || {} }; },
          function () { return { status: r.status, body: {} }; });
      })
      .then(function (res) {
        busy = false;
        var b = res.body;
        if (res.status === 200 && typeof b.next_offset === 'number') {
          // A piece starting elsewhere than asked: the log was rotated.
          if (offset !== null && b.offset !== offset) append('\n… (the log was rotated)\n');
          append(typeof b.text === 'string' ? b.text : '');
          offset = b.next_offset;
          if (!stopped) setState('following', 'following');
          later(EVERY);
        } else if (res.status === 401 || res.status === 403 || res.status === 404 || res.status === 400) {
          stop('stopped: ' + (b.error || 'HTTP ' + res.status));
        } else {
          if (!stopped) setState('unreachable', 'host not answering: ' + (b.error || 'HTTP ' + res.status) + ' (trying again)');
          later(SLOW);
        }
      }, function () {
        busy = false;
        if (!stopped) setState('unreachable', 'host not answering: the dashboard cannot be reached (trying again)');
        later(SLOW);
      });
  }
  if (toggle) {
    toggle.hidden = false;
    toggle.addEventListener('click', function () {
      if (stopped) {
        stopped = false;
        toggle.textContent = 'Stop';
        setState('following', 'following');
        tick();
      } else {
        stop('stopped');
      }
    });
  }
  document.addEventListener('visibilitychange', function () {
    if (!document.hidden && !stopped) later(0);
  });
  pre.scrollTop = pre.scrollHeight;
  setState('following', 'following');
  later(offset === null ? 0 : EVERY);
})();
