"""The dashboard's pages (Jinja2 templates, autoescaped), its stylesheet and its one script.

Kept in Python strings so that the package needs no data files. Every value is escaped by
Jinja2; the only markup inserted unescaped is the SVG that :mod:`dojo.service.web.svg`
drew (which escapes what it writes). No inline script, no inline style: the page's
Content-Security-Policy allows only this service's own stylesheet and script.
"""

from __future__ import annotations

from typing import Any

from jinja2 import DictLoader, Environment, StrictUndefined

BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{% if refresh %}<meta http-equiv="refresh" content="{{ refresh }}">{% endif %}
<title>{{ title }} · Dojo</title>
<link rel="stylesheet" href="{{ root }}/static/dashboard.css">
<script src="{{ root }}/static/dashboard.js" defer></script>
</head><body>
<header><a class="brand" href="{{ root }}">Dojo</a>
{% if who %}<nav><a href="{{ root }}">Map</a><a href="{{ root }}/jobs">Jobs</a></nav>
<span class="who" id="who">{{ who }}</span>
<form method="post" action="{{ root }}/logout" class="logout"><button type="submit">Log out</button></form>
{% endif %}</header>
<main>{% block main %}{% endblock %}</main>
</body></html>
"""

LOGIN = """{% extends "base" %}{% block main %}
<h1>Log in</h1>
<p>Paste an API token (tenant or admin). It is kept in an HttpOnly cookie for this site only.</p>
{% if error %}<p class="error" id="login-error">{{ error }}</p>{% endif %}
<form method="post" action="{{ root }}/login" class="login">
<input type="hidden" name="next" value="{{ next }}">
<label for="token">Token</label>
<input type="password" id="token" name="token" autocomplete="off" required maxlength="200" autofocus>
<button type="submit" id="login">Log in</button>
</form>
{% endblock %}"""

MAP = """{% extends "base" %}{% block main %}
<h1>Compute map</h1>
<p class="summary" id="map-summary">{{ summary }}</p>
<div class="map-wrap">{{ svg | safe }}</div>
<div class="legend" id="legend">
<span class="key"><svg width="12" height="12"><rect width="12" height="12" fill="{{ free_fill }}" stroke="#3e4c59" stroke-width="0.5"/></svg> free</span>
{% if show_busy %}<span class="key"><svg width="12" height="12"><rect width="12" height="12" fill="{{ busy_fill }}"/></svg> busy (another tenant)</span>{% endif %}
{% for group in legend %}
<div class="legend-group">{% if group.title %}<strong>{{ group.title }}</strong>{% endif %}
{% for item in group["items"] %}<span class="key"><svg width="12" height="12"><rect width="12" height="12" fill="{{ item.fill }}"/></svg>
{% if item.href %}<a href="{{ item.href }}">{{ item.label }}</a>{% else %}{{ item.label }}{% endif %}</span>
{% endfor %}</div>
{% endfor %}
</div>
{% if unplaced %}<p class="note">{{ unplaced }}</p>{% endif %}
{% if gpu_jobs %}<h2>GPU jobs</h2>
<table class="jobs" id="gpu-jobs"><thead><tr><th>job</th><th>GPUs</th><th>hosts</th></tr></thead><tbody>
{% for g in gpu_jobs %}<tr><td>{% if g.href %}<a href="{{ g.href }}">{{ g.label }}</a>{% else %}{{ g.label }}{% endif %}</td><td>{{ g.gpus }}</td><td>{{ g.hosts }}</td></tr>
{% endfor %}</tbody></table>{% endif %}
<h2>Active jobs</h2>
{% include "job_table" %}
<p><a href="{{ root }}/jobs">All jobs</a></p>
{% if usage %}<h2>Usage this month</h2>
<dl class="facts" id="usage">{% for k, v in usage %}<dt>{{ k }}</dt><dd>{{ v }}</dd>{% endfor %}</dl>
<p class="note">Metered as <code>GET /v1/usage</code> reports it.</p>{% endif %}
{% endblock %}"""

JOB_TABLE = """{% if jobs %}<table class="jobs" id="jobs"><thead><tr>
<th>job</th><th>name</th>{% if admin %}<th>tenant</th>{% endif %}<th>kind</th><th>status</th>
<th>compute</th><th>priority</th><th>placement</th><th>created</th></tr></thead><tbody>
{% for j in jobs %}<tr data-job="{{ j.id }}">
<td><a href="{{ root }}/jobs/{{ j.id }}">{{ j.id }}</a></td><td class="name">{{ j.name }}</td>
{% if admin %}<td>{{ j.tenant }}</td>{% endif %}<td>{{ j.kind }}</td>
<td><span class="status s-{{ j.status }}">{{ j.status }}</span></td><td>{{ j.compute }}</td>
<td>{{ j.priority }}</td><td>{{ j.where }}</td><td>{{ j.created }}</td></tr>
{% endfor %}</tbody></table>{% else %}<p class="note">No jobs.</p>{% endif %}"""

JOBS = """{% extends "base" %}{% block main %}
<h1>Jobs</h1>
<p class="filters">Status: {% for f in filters %}<a href="{{ f.href }}"{% if f.on %} class="on"{% endif %}>{{ f.label }}</a> {% endfor %}</p>
<p class="summary">{{ summary }}</p>
{% include "job_table" %}
<p class="pages">{% if prev %}<a href="{{ prev }}">newer</a>{% endif %} {% if next %}<a href="{{ next }}">older</a>{% endif %}</p>
{% endblock %}"""

JOB = """{% extends "base" %}{% block main %}
<h1>Job <span class="job-id">{{ job.id }}</span></h1>
<p class="job-name" id="job-name">{{ job.name }}</p>
<dl class="facts">
<dt>status</dt><dd><span id="job-status" class="status s-{{ job.status }}">{{ job.status }}</span></dd>
{% for k, v in facts %}<dt>{{ k }}</dt><dd>{{ v }}</dd>{% endfor %}
</dl>
{% if job.error %}<p class="error" id="job-error">{{ job.error }}</p>{% endif %}
<h2>Charts</h2>
<div id="charts" data-src="{{ root }}/jobs/{{ job.id }}/charts">{% include "charts" %}</div>
<h2>Log</h2>
<p class="note">{% if skipped %}The first {{ skipped }} bytes are not shown; {% endif %}
<a href="{{ root }}/jobs/{{ job.id }}/log?offset=0">raw log</a>
<label class="follow"><input type="checkbox" id="autoscroll" checked> scroll with new lines</label></p>
<pre id="log" data-src="{{ root }}/jobs/{{ job.id }}/log" data-offset="{{ offset }}"
 data-status="{{ job.status }}" data-login="{{ root }}/login">{{ log }}</pre>
<h2>Spec</h2><pre class="spec">{{ spec }}</pre>
{% if placement %}<h2>Placement</h2><pre class="spec" id="placement">{{ placement }}</pre>{% endif %}
{% endblock %}"""

CHARTS = """{% for svg in charts %}<div class="chart-wrap">{{ svg | safe }}</div>{% endfor %}
{% if not charts %}<p class="note" id="no-charts">No loss or nines rows yet.</p>{% endif %}"""

ERROR = """{% extends "base" %}{% block main %}<h1>{{ title }}</h1><p class="error">{{ message }}</p>
<p><a href="{{ root }}">Back to the map</a></p>{% endblock %}"""

_ENV = Environment(
    loader=DictLoader(
        {
            "base": BASE,
            "login": LOGIN,
            "map": MAP,
            "job_table": JOB_TABLE,
            "jobs": JOBS,
            "job": JOB,
            "charts": CHARTS,
            "error": ERROR,
        }
    ),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=False,
)


def render(template: str, **values: Any) -> str:
    return _ENV.get_template(template).render(**values)


CSS = """
:root { color-scheme: light; --ink: #1f2933; --muted: #52606d; --line: #cbd2d9; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       background: #f5f7fa; }
header { display: flex; gap: 18px; align-items: center; padding: 8px 18px; background: #1f2933; color: #fff; }
header a { color: #fff; text-decoration: none; }
header nav a { margin-right: 14px; }
.brand { font-weight: 700; letter-spacing: .04em; }
.who { margin-left: auto; opacity: .8; }
.logout button { background: transparent; color: #fff; border: 1px solid #9aa5b1; border-radius: 4px;
                 padding: 2px 8px; cursor: pointer; }
main { padding: 14px 18px 40px; max-width: 1240px; }
h1 { font-size: 20px; margin: 6px 0 10px; } h2 { font-size: 16px; margin: 22px 0 8px; }
a { color: #2f5f8f; }
.map-wrap, .chart-wrap { overflow-x: auto; background: #fff; border: 1px solid var(--line);
                         border-radius: 6px; padding: 8px; margin-bottom: 10px; }
.map { max-width: 100%; height: auto; }
.chart { max-width: 100%; height: auto; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; align-items: center; }
.legend-group { display: flex; flex-wrap: wrap; gap: 4px 12px; align-items: center; }
.key { display: inline-flex; gap: 5px; align-items: center; }
table.jobs { border-collapse: collapse; background: #fff; width: 100%; }
table.jobs th, table.jobs td { border-bottom: 1px solid #e4e7eb; padding: 4px 8px; text-align: left;
                               white-space: nowrap; }
table.jobs td.name { white-space: normal; word-break: break-all; }
.status { padding: 1px 7px; border-radius: 9px; background: #e4e7eb; font-size: 12px; }
.s-running { background: #d9ecff; } .s-placed { background: #e8e2ff; } .s-succeeded { background: #dcf3dc; }
.s-failed { background: #ffdcdc; } .s-cancelled, .s-cancelling { background: #f2e6d9; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; }
pre { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px;
      white-space: pre-wrap; word-break: break-all; }
#log { max-height: 480px; overflow: auto; background: #111820; color: #e4e7eb; }
.error { color: #b42318; } .note, .summary { color: var(--muted); }
.filters a { margin-right: 6px; } .filters a.on { font-weight: 700; }
form.login { display: flex; gap: 8px; align-items: center; }
form.login input[type=password] { width: 420px; max-width: 100%; padding: 5px; }
.job-name { font-size: 15px; word-break: break-all; }
"""

# Follows the log (polling the dashboard's log endpoint from the last offset while the job is
# active) and refreshes the charts; text goes in as text nodes, never as markup.
JS = """"use strict";
(function () {
  var ACTIVE = ["queued", "placed", "running", "cancelling"];
  var pre = document.getElementById("log");
  if (!pre) { return; }
  var statusEl = document.getElementById("job-status");
  var charts = document.getElementById("charts");
  var autoscroll = document.getElementById("autoscroll");
  var offset = Number(pre.dataset.offset) || 0;
  var status = pre.dataset.status;
  var decoder = new TextDecoder("utf-8");
  var lastCharts = 0;

  function active() { return ACTIVE.indexOf(status) >= 0; }

  function setStatus(s) {
    if (!s || s === status) { return; }
    status = s;
    statusEl.textContent = s;
    statusEl.className = "status s-" + s.replace(/[^a-z]/g, "");
  }

  function refreshCharts() {
    lastCharts = Date.now();
    return fetch(charts.dataset.src, {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (text === null) { return; }
        var doc = new DOMParser().parseFromString(text, "text/html");
        var nodes = Array.prototype.map.call(doc.body.childNodes, function (n) {
          return document.importNode(n, true);
        });
        charts.replaceChildren.apply(charts, nodes);
      })
      .catch(function () { /* try again on the next round */ });
  }

  function poll() {
    var url = pre.dataset.src + "?offset=" + offset;
    fetch(url, {credentials: "same-origin", cache: "no-store"})
      .then(function (r) {
        if (r.status === 401) { window.location.assign(pre.dataset.login); throw new Error("login"); }
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        var next = Number(r.headers.get("X-Log-Offset"));
        var st = r.headers.get("X-Job-Status");
        return r.arrayBuffer().then(function (buf) { return [buf, next, st]; });
      })
      .then(function (got) {
        var buf = got[0];
        offset = Number.isFinite(got[1]) ? got[1] : offset + buf.byteLength;
        var text = decoder.decode(new Uint8Array(buf), {stream: true});
        if (text) {
          pre.appendChild(document.createTextNode(text));
          if (autoscroll && autoscroll.checked) { pre.scrollTop = pre.scrollHeight; }
        }
        var was = active();
        setStatus(got[2]);
        if (!active()) { if (was) { refreshCharts(); } return; }
        if (Date.now() - lastCharts > 5000) { refreshCharts(); }
        window.setTimeout(poll, buf.byteLength > 0 ? 200 : 1000);
      })
      .catch(function (e) {
        if (e && e.message === "login") { return; }
        window.setTimeout(poll, 3000);
      });
  }

  lastCharts = Date.now();
  if (active()) { window.setTimeout(poll, 500); }
})();
"""
