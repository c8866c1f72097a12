// The playground's editor: line numbers, a debounced render as the author types, the error's
// line marked in the gutter, and the "check all types" table. Pages without the editor do nothing.
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var editor = $('template');
  if (!editor) { return; }
  var gutter = $('gutter'), band = $('band');
  var LINE = 20, PAD = 8;
  var timer = null, seq = 0, errLine = 0;

  function lineCount() { return editor.value.split('\n').length; }

  function drawGutter() {
    var n = lineCount();
    if (gutter.childElementCount !== n) {
      gutter.textContent = '';
      for (var i = 1; i <= n; i++) {
        var d = document.createElement('div');
        d.textContent = String(i);
        d.setAttribute('data-line', String(i));
        gutter.appendChild(d);
      }
    }
    markError();
  }

  function markError() {
    var rows = gutter.children;
    for (var i = 0; i < rows.length; i++) {
      rows[i].classList.toggle('err', i + 1 === errLine);
    }
    gutter.scrollTop = editor.scrollTop;
    if (errLine > 0) {
      band.hidden = false;
      band.style.top = (PAD + (errLine - 1) * LINE - editor.scrollTop) + 'px';
    } else {
      band.hidden = true;
    }
  }

  function request() {
    return JSON.stringify({
      kind: $('kind').value,
      template: editor.value,
      template_type: $('sample-type').value,
      message_type: $('sample-kind').value,
      style: $('style').value,
      message: $('message').value || null
    });
  }

  function post(action) {
    return fetch('/ui/playground/' + action, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: request()
    }).then(function (r) {
      if (r.status === 401) { window.location = '/ui/login?next=%2Fui%2Fplayground'; }
      return r.json();
    });
  }

  function show(answer) {
    var status = $('status'), error = $('error'), payload = $('payload');
    if (answer.ok) {
      errLine = 0;
      error.hidden = true;
      error.textContent = '';
      payload.textContent = answer.payload;
      status.textContent = 'Rendered: ' + answer.bytes + ' bytes.';
      editor.removeAttribute('aria-invalid');
    } else {
      var e = answer.error || {};
      errLine = e.line || 0;
      error.hidden = false;
      error.textContent = answer.cancelled
        ? 'The template cancels this message (error "cancel"): it would not be sent.'
        : (e.full || e.summary || e.message || e.reason || 'error');
      payload.textContent = '';
      status.textContent = e.line ? 'Error at line ' + e.line + ':' + e.column + '.' : 'Error.';
      editor.setAttribute('aria-invalid', 'true');
    }
    markError();
  }

  function render() {
    var mine = ++seq;
    post('render').then(function (answer) {
      if (mine === seq) { show(answer); }
    }).catch(function (err) {
      $('status').textContent = 'The request failed: ' + err;
    });
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(render, 250);
  }

  function cell(row, text, cls) {
    var td = document.createElement('td');
    td.textContent = text;
    if (cls) { td.className = cls; }
    row.appendChild(td);
  }

  function checkAll() {
    var out = $('check-table');
    out.textContent = 'Checking…';
    post('check').then(function (answer) {
      out.textContent = '';
      if (!answer.rows) { out.textContent = (answer.error && answer.error.reason) || 'error'; return; }
      var summary = document.createElement('p');
      summary.textContent = answer.ok + ' ok, ' + answer.cancelled + ' cancelled, ' + answer.failed +
        ' failed (' + answer.style + ' style)';
      out.appendChild(summary);
      var wrap = document.createElement('div');
      wrap.className = 'scroll';
      var table = document.createElement('table');
      var head = table.createTHead().insertRow();
      ['Type', 'Kind', 'Result', 'Bytes', 'Detail'].forEach(function (h) {
        var th = document.createElement('th');
        th.scope = 'col';
        th.textContent = h;
        head.appendChild(th);
      });
      var body = table.createTBody();
      answer.rows.forEach(function (r) {
        var row = body.insertRow();
        cell(row, r.template_type);
        cell(row, r.kind);
        cell(row, r.result, 'result-' + r.result);
        cell(row, r.bytes === null ? '-' : String(r.bytes));
        cell(row, r.detail);
      });
      wrap.appendChild(table);
      out.appendChild(wrap);
    }).catch(function (err) { out.textContent = 'The request failed: ' + err; });
  }

  editor.addEventListener('input', function () { drawGutter(); later(); });
  editor.addEventListener('scroll', markError);
  ['kind', 'sample-type', 'sample-kind', 'style'].forEach(function (id) {
    $(id).addEventListener('change', later);
  });
  $('message').addEventListener('input', later);
  $('check-all').addEventListener('click', checkAll);
  drawGutter();
  render();
}());
