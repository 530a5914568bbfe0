// optel dashboard: reads the collector's query API (docs/query-api.md) and draws the panels.
// No framework, no build step; Chart.js (vendored, see docs/adr/003-dashboard-charts.md) draws.
//
// Privacy and security: the admin token lives in sessionStorage only (this tab, until it
// closes), is sent only in the Authorization header to this origin, and never appears in a URL.
// The URL hash holds only the project and the range, so a link can be shared without a secret.
'use strict';

(function () {
  const TOKEN_KEY = 'optel.adminToken';
  const RANGES = ['24h', '7d', '30d', '90d'];
  // Okabe-Ito palette: distinguishable with the common colour-vision deficiencies.
  const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000'];
  const OK = '#0072B2';
  const BAD = '#C0392B';
  const MAX_BARS = 12;
  const MAX_VERSIONS = 6;

  const $ = (id) => document.getElementById(id);
  const el = (tag, props, ...children) => {
    const e = document.createElement(tag);
    Object.assign(e, props || {});
    for (const c of children) e.append(c);
    return e;
  };
  const nf = new Intl.NumberFormat('en');
  const fmt = (n) => (n === null || n === undefined ? '–' : nf.format(n));
  const pct = (x) => (x === null || x === undefined ? '–' : (x * 100).toFixed(1) + '%');
  const ms = (n) => {
    if (n === null || n === undefined) return '–';
    if (n < 1000) return n + ' ms';
    if (n < 60000) return (n / 1000).toFixed(n < 10000 ? 2 : 1) + ' s';
    return (n / 60000).toFixed(1) + ' min';
  };

  // Public mode: /public/{project} reads /public/v1/projects/{project}/... without a token.
  const publicMatch = location.pathname.match(/^\/public\/([^/]+)\/?$/);
  const publicProject = publicMatch ? decodeURIComponent(publicMatch[1]) : null;

  const state = {
    token: publicProject ? null : sessionStorage.getItem(TOKEN_KEY),
    projects: [],
    project: publicProject,
    range: '7d',
    from: null,
    to: null,
    data: {},
    k: 5,
    charts: {},
    seq: 0,
  };

  // ---------- URL hash: project and range only (never the token) ----------
  function readHash() {
    const h = new URLSearchParams(location.hash.slice(1));
    if (!publicProject && h.get('project')) state.project = h.get('project');
    const r = h.get('range');
    if (RANGES.includes(r)) state.range = r;
    else if (r === 'custom' && /^\d{4}-\d{2}-\d{2}$/.test(h.get('from') || '') && /^\d{4}-\d{2}-\d{2}$/.test(h.get('to') || '')) {
      state.range = 'custom';
      state.from = h.get('from');
      state.to = h.get('to');
    }
  }
  function writeHash() {
    const h = new URLSearchParams();
    if (!publicProject && state.project) h.set('project', state.project);
    h.set('range', state.range);
    if (state.range === 'custom') { h.set('from', state.from); h.set('to', state.to); }
    const s = '#' + h.toString();
    if (location.hash !== s) history.replaceState(null, '', s);
  }

  // ---------- API ----------
  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }
  async function api(path) {
    const headers = { Accept: 'application/json' };
    if (state.token) headers.Authorization = 'Bearer ' + state.token;
    let res;
    try {
      res = await fetch(path, { headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' });
    } catch (e) {
      throw new ApiError(0, 'network', 'cannot reach the collector: is it running?');
    }
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (!res.ok) {
      const err = body && body.error;
      throw new ApiError(res.status, err ? err.code : 'http_' + res.status, err ? err.message : 'the collector answered ' + res.status);
    }
    return body;
  }
  function rangeQuery() {
    const q = new URLSearchParams();
    if (state.range === 'custom') {
      q.set('from', state.from + 'T00:00:00Z');
      const to = new Date(state.to + 'T00:00:00Z');
      to.setUTCDate(to.getUTCDate() + 1); // the "to" day is included: the range ends at its end
      q.set('to', to.toISOString().replace('.000Z', 'Z'));
      const days = (to - new Date(state.from + 'T00:00:00Z')) / 86400000;
      q.set('granularity', days > 120 ? 'week' : 'day');
    } else {
      q.set('since', state.range);
      q.set('granularity', 'day');
    }
    return q.toString();
  }
  function base() {
    const p = encodeURIComponent(state.project);
    return publicProject ? '/public/v1/projects/' + p : '/v1/projects/' + p;
  }

  // ---------- UI state ----------
  function setStatus(text) { $('status').textContent = text || ''; }
  function showAlert(text) {
    const a = $('alert');
    a.textContent = text || '';
    a.hidden = !text;
  }
  function showSignin(message) {
    $('controls').hidden = true;
    $('dashboard').hidden = true;
    $('signin').hidden = false;
    showAlert(message || '');
    setStatus('');
    $('token').focus();
  }
  function showDashboard() {
    $('signin').hidden = true;
    $('controls').hidden = false;
    $('dashboard').hidden = false;
  }
  function syncControls() {
    for (const b of document.querySelectorAll('.range')) {
      b.setAttribute('aria-pressed', String(b.dataset.range === state.range));
    }
    $('custom').hidden = state.range !== 'custom';
    if (state.range === 'custom') { $('from').value = state.from || ''; $('to').value = state.to || ''; }
    if (!publicProject) {
      const sel = $('project');
      sel.replaceChildren(...state.projects.map((p) => el('option', { value: p.name, textContent: p.name + (p.public ? ' (public)' : ''), selected: p.name === state.project })));
    }
  }

  // ---------- loading ----------
  async function loadProjects() {
    const body = await api('/v1/projects');
    // The contract's shape is {"projects":[...]}; older collectors answer a bare array.
    state.projects = Array.isArray(body) ? body : body.projects || [];
    if (!state.projects.some((p) => p.name === state.project)) {
      state.project = state.projects.length ? state.projects[0].name : null;
    }
  }

  async function loadPanels() {
    const seq = ++state.seq;
    writeHash();
    syncControls();
    if (!state.project) {
      $('title').textContent = 'No projects yet';
      $('range-label').textContent = 'Create one with `optel projects create NAME` and send it events.';
      return;
    }
    $('main').setAttribute('aria-busy', 'true');
    setStatus('Loading ' + state.project + '…');
    const q = rangeQuery();
    const routes = ['overview', 'timeseries', 'commands', 'errors', 'versions', 'platforms', 'features'];
    try {
      // The analytics views and release health are admin only.
      if (!publicProject) routes.push('breakdowns', 'phases', 'measurements', 'adoption', 'release-health');
      const answers = await Promise.all(routes.map((r) => api(base() + '/' + r + '?' + q)));
      if (seq !== state.seq) return; // a newer selection superseded this one
      routes.forEach((r, i) => { state.data[r] = answers[i]; });
      showAlert('');
      $('dashboard').hidden = false;
      render();
      setStatus('Updated ' + new Date().toLocaleTimeString('en-GB', { hour12: false }) + '.');
      document.body.dataset.loaded = String(seq);
    } catch (e) {
      if (seq !== state.seq) return;
      handleError(e);
    } finally {
      if (seq === state.seq) $('main').removeAttribute('aria-busy');
    }
  }

  function handleError(e) {
    setStatus('');
    if (e.status === 401 && !publicProject) {
      sessionStorage.removeItem(TOKEN_KEY);
      state.token = null;
      showSignin('The admin token was not accepted: check it and sign in again.');
    } else if (e.status === 403 && e.code === 'queries_disabled') {
      showAlert('This collector has no admin token, so its query routes are off: start it with --admin-token or OPTEL_ADMIN_TOKEN.');
    } else if (e.status === 404 && publicProject) {
      $('dashboard').hidden = true;
      showAlert('There is no public project named "' + publicProject + '".');
    } else {
      showAlert(e.message + (e.code ? ' (' + e.code + ')' : ''));
    }
  }

  // ---------- rendering ----------
  function kSuppressed() { return 'fewer than ' + state.k + ' installs'; }
  function noteSuppressed(id, body, what) {
    const n = body && body.suppressed_rows;
    if (body && body.k) state.k = body.k;
    $(id).textContent = n ? n + ' ' + what + (n === 1 ? '' : 's') + ' used by ' + kSuppressed() + ' not shown.' : '';
  }

  function rangeText() {
    const o = state.data.overview || {};
    const d = (s) => (s ? s.replace('T', ' ').replace(/:\d\d(\.\d+)?Z$/, ' UTC') : '?');
    const label = state.range === 'custom' ? state.from + ' to ' + state.to : 'last ' + state.range;
    return label + ' (' + d(o.from) + ' → ' + d(o.to) + ')';
  }

  function setKpi(id, value, text) {
    const e = $(id);
    e.classList.toggle('suppressed', value === null);
    e.dataset.value = value === null || value === undefined ? '' : String(value);
    e.textContent = value === null ? kSuppressed() : text;
  }

  function render() {
    const d = state.data;
    for (const body of Object.values(d)) if (body && body.k) state.k = body.k;
    $('title').textContent = state.project + (publicProject ? ' — public usage' : '');
    $('range-label').textContent = rangeText();
    document.title = state.project + ' · optel';

    const o = d.overview;
    const sup = o.suppressed === true;
    const inv = sup ? null : o.invocations;
    setKpi('kpi-invocations', inv, fmt(inv));
    const rate = sup ? null : o.invocations ? o.failures / o.invocations : 0;
    setKpi('kpi-failure-rate', rate, o.invocations ? pct(rate) + ' (' + fmt(o.failures) + ')' : '–');
    setKpi('kpi-active', sup ? null : o.active_installs, fmt(o.active_installs));
    setKpi('kpi-dau', sup ? null : o.dau, fmt(o.dau));
    setKpi('kpi-wau', sup ? null : o.wau, fmt(o.wau));
    setKpi('kpi-mau', sup ? null : o.mau, fmt(o.mau));

    renderTimeseries(d.timeseries);
    renderCommands(d.commands);
    renderErrors(d.errors);
    renderVersions(d.versions);
    renderPlatforms(d.platforms);
    renderFeatures(d.features);
    renderDp();
    for (const p of document.querySelectorAll('.admin-only')) p.hidden = !!publicProject;
    if (!publicProject) {
      renderBreakdowns(d.breakdowns);
      renderPhases(d.phases, d.commands);
      renderAdoption(d.adoption);
      renderRelease(d['release-health']);
      renderMeasurements(d.measurements);
    }
  }

  // The differential-privacy parameters of a public view (ADR 012), from any answer's `dp`.
  function renderDp() {
    const dp = Object.values(state.data).map((b) => b && b.dp).find(Boolean);
    const note = $('dp-note');
    note.hidden = !dp;
    if (!dp) return;
    note.dataset.epsilon = dp.epsilon;
    note.dataset.remaining = dp.remaining;
    note.textContent = 'Differential privacy: every number has ' + dp.mechanism + ' noise, ε = ' + dp.epsilon +
      ' per answer (event level); privacy budget ' + dp.daily_budget + ' per day, ' + dp.remaining +
      ' left on ' + dp.day + ' (UTC). Answers are computed once a day and then repeated; durations are not shown.';
  }

  function cells(...values) {
    return values.map((v) => (v instanceof Node ? el('td', {}, v) : el('td', { className: 'num', textContent: v })));
  }

  function renderBreakdowns(body) {
    const list = (body && body.breakdowns) || [];
    const picker = $('breakdown-picker');
    const keyOf = (b) => b.event_type + ' ' + b.name + ' · ' + b.attribute;
    const previous = picker.value;
    picker.replaceChildren(...list.map((b) => el('option', { value: keyOf(b), textContent: keyOf(b), selected: keyOf(b) === previous })));
    const draw = () => {
      const b = list.find((x) => keyOf(x) === picker.value) || list[0];
      const tbody = $('table-breakdowns').tBodies[0];
      if (!b) { emptyRow(tbody, 5, 'No declared attributes in this range (schema version 2 batches with a catalog).'); return; }
      const max = b.values.reduce((m, v) => Math.max(m, v.count), 0) || 1;
      tbody.replaceChildren(...b.values.map((v) => {
        const bar = el('div', { className: 'bar neutral' });
        bar.style.width = Math.round((v.count / max) * 100) + '%';
        const tr = el('tr', {}, el('td', {}, el('code', { textContent: v.value })), ...cells(fmt(v.count), fmt(v.failures), fmt(v.installs)),
          el('td', { className: 'bar-cell hide-narrow', ariaHidden: 'true' }, bar));
        Object.assign(tr.dataset, { value: v.value, count: v.count, failures: v.failures, installs: v.installs });
        return tr;
      }));
    };
    picker.onchange = draw;
    draw();
  }


  // Fractional milliseconds (phases, measurements) to one decimal.
  function msf(x) { return x === null || x === undefined ? '–' : ms(Math.round(x * 10) / 10); }

  // The phase waterfall: per command, its phases in the API's waterfall order (each followed
  // by the phases nested in it, indented by depth), each a bar that starts at the phase's mean
  // start and is as long as its p50, on a scale of the command's p50 (widened if a phase ends
  // later); the p95 is in the bar's label and tooltip.
  function renderPhases(body, commands) {
    const rows = (body && body.phases) || [];
    const tbody = $('table-phases').tBodies[0];
    if (!rows.length) { emptyRow(tbody, 5, 'No phases recorded in this range.'); return; }
    const commandP50 = new Map(((commands && commands.commands) || []).map((c) => [c.name, c.p50_ms || 0]));
    const byCommand = new Map();
    for (const r of rows) { if (!byCommand.has(r.command)) byCommand.set(r.command, []); byCommand.get(r.command).push(r); }
    const out = [];
    for (const [command, phases] of byCommand) {
      const p50 = commandP50.get(command) || 0;
      const scale = phases.reduce((m, p) => Math.max(m, (p.mean_start_ms || 0) + p.p50_ms), p50) || 1;
      const head = el('th', { scope: 'rowgroup', colSpan: 5 }, el('code', { textContent: command }));
      if (p50) head.append(' ', el('span', { className: 'wf-total', textContent: 'p50 ' + ms(p50) }));
      out.push(el('tr', { className: 'group' }, head));
      for (const p of phases) {
        const depth = Math.min(p.depth || 0, 8);
        const start = p.mean_start_ms || 0;
        const label = p.phase + (p.parent ? ' (in ' + p.parent + ')' : '') + ': starts at ' + msf(start) + ' on average, p50 ' + msf(p.p50_ms) + ', p95 ' + msf(p.p95_ms);
        const track = el('div', { className: 'waterfall', title: label });
        const left = Math.min(100, (start / scale) * 100);
        const p95 = el('div', { className: 'wf-p95' });
        const bar = el('div', { className: 'wf-p50' });
        p95.style.left = bar.style.left = left.toFixed(2) + '%';
        p95.style.width = Math.max(0.5, Math.min(100 - left, (p.p95_ms / scale) * 100)).toFixed(2) + '%';
        bar.style.width = Math.max(0.5, Math.min(100 - left, (p.p50_ms / scale) * 100)).toFixed(2) + '%';
        track.append(p95, bar);
        const name = el('td', { className: 'indent' }, el('code', { textContent: p.phase }));
        name.style.paddingLeft = (1.2 + 1.2 * depth) + 'rem';
        const tr = el('tr', {}, name, ...cells(fmt(p.count), msf(p.p50_ms), msf(p.p95_ms)),
          el('td', { className: 'bar-cell hide-narrow', ariaLabel: label }, track));
        Object.assign(tr.dataset, { command, phase: p.phase, parent: p.parent || '', depth, start, count: p.count, p50: p.p50_ms, p95: p.p95_ms });
        out.push(tr);
      }
    }
    tbody.replaceChildren(...out);
  }

  function renderAdoption(body) {
    const series = ((body && body.series) || []).slice(0, MAX_VERSIONS);
    const labels = series.length ? series[0].daily.map((d) => d.day) : [];
    chart('chart-adoption', {
      type: 'line',
      data: { labels, datasets: series.map((s, i) => ({ label: s.event_type + ' ' + s.name, data: s.daily.map((d) => d.count), borderColor: PALETTE[i % PALETTE.length], backgroundColor: PALETTE[i % PALETTE.length], pointRadius: labels.length > 40 ? 0 : 2, tension: 0 })) },
      options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
    });
    $('note-adoption').textContent = series.length ? '' : 'No features, methods or custom events in this range.';
  }

  function change(c) { return { up: '▲ up', down: '▼ down', unchanged: 'within noise', too_few: 'too few', no_previous: '–' }[c] || c; }

  function renderRelease(h) {
    const tbody = $('table-release').tBodies[0];
    if (!h || !h.version) { $('release-label').textContent = ''; emptyRow(tbody, 7, 'No command events in this range.'); return; }
    $('release-label').textContent = 'Version ' + h.version + (h.previous ? ' against ' + h.previous : ' (the first version: nothing to compare)') +
      ' · z ≥ ' + h.noise.z + ', at least ' + h.noise.min_invocations + ' invocations';
    tbody.replaceChildren(...h.commands.map((c) => {
      const prev = c.previous || {};
      const tr = el('tr', {}, el('td', {}, el('code', { textContent: c.name })),
        ...cells(pct(c.current.failure_rate), c.previous ? pct(prev.failure_rate) : '–'),
        el('td', { textContent: change(c.failure_rate_change) }),
        ...cells(msf(c.current.p95_ms), msf(prev.p95_ms)),
        el('td', { textContent: change(c.p95_change) }));
      Object.assign(tr.dataset, { command: c.name, failureRate: c.current.failure_rate, failureChange: c.failure_rate_change, p95Change: c.p95_change });
      return tr;
    }));
    const codes = h.new_error_codes || [];
    $('note-release').textContent = codes.length
      ? 'New error codes in ' + h.version + ': ' + codes.map((e) => e.command + ' ' + e.error_code + ' (' + fmt(e.count) + ')').join(', ') + '.'
      : (h.previous ? 'No new error codes.' : '');
  }

  function renderMeasurements(body) {
    const rows = (body && body.measurements) || [];
    const tbody = $('table-measurements').tBodies[0];
    if (!rows.length) { emptyRow(tbody, 5, 'No measurements in this range.'); return; }
    const unit = (m, x) => (m.unit === 'ms' ? msf(x) : m.unit === 'bytes' ? fmt(Math.round(x)) + ' B' : fmt(Math.round(x * 100) / 100));
    tbody.replaceChildren(...rows.map((m) => {
      const tr = el('tr', {}, el('td', {}, el('code', { textContent: m.name })), ...cells(fmt(m.count), unit(m, m.sum), unit(m, m.p50), unit(m, m.p95)));
      Object.assign(tr.dataset, { name: m.name, count: m.count, sum: m.sum });
      return tr;
    }));
  }

  function chart(id, config) {
    if (state.charts[id]) state.charts[id].destroy();
    const base = {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: 'index', intersect: false },
      plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } },
    };
    config.options = Object.assign(base, config.options || {});
    state.charts[id] = new Chart($(id), config);
  }

  function suppressedBuckets(buckets) {
    return buckets.filter((b) => b.suppressed).length;
  }

  function renderTimeseries(ts) {
    const b = ts.buckets || [];
    const labels = b.map((x) => x.start);
    const ok = b.map((x) => (x.invocations === null ? null : x.invocations - x.failures));
    const failed = b.map((x) => x.failures);
    chart('chart-timeseries', {
      type: 'bar',
      data: { labels, datasets: [
        { label: 'Succeeded', data: ok, backgroundColor: OK, stack: 's' },
        { label: 'Failed', data: failed, backgroundColor: BAD, stack: 's' },
      ] },
      options: { scales: { x: { stacked: true, ticks: { maxRotation: 0, autoSkip: true } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
    });
    const total = b.reduce((s, x) => s + (x.invocations || 0), 0);
    $('chart-timeseries').setAttribute('aria-label', 'Invocations per ' + (ts.granularity || 'day') + ': ' + fmt(total) + ' in ' + b.length + ' buckets');
    chart('chart-installs', {
      type: 'line',
      data: { labels, datasets: [{ label: 'Active installs per ' + (ts.granularity || 'day'), data: b.map((x) => x.active_installs), borderColor: PALETTE[2], backgroundColor: PALETTE[2], pointRadius: b.length > 40 ? 0 : 2, tension: 0, spanGaps: false }] },
      options: { scales: { x: { ticks: { maxRotation: 0, autoSkip: true } }, y: { beginAtZero: true, ticks: { precision: 0 } } } },
    });
    const n = suppressedBuckets(b);
    const msg = n ? n + ' ' + (ts.granularity || 'day') + (n === 1 ? '' : 's') + ' with ' + kSuppressed() + ' not shown.' : '';
    $('note-timeseries').textContent = msg;
    $('note-installs').textContent = msg;
  }

  function hbar(id, boxId, labels, datasets, stacked) {
    // An empty chart says nothing: hide it and let the panel's note speak.
    $(boxId).hidden = labels.length === 0;
    $(boxId).style.height = Math.max(100, 50 + labels.length * 30) + 'px';
    chart(id, {
      type: 'bar',
      data: { labels, datasets },
      options: {
        indexAxis: 'y',
        interaction: { mode: 'index', intersect: false, axis: 'y' },
        plugins: { legend: { display: datasets.length > 1, position: 'bottom', labels: { boxWidth: 12 } } },
        scales: { x: { stacked: !!stacked, beginAtZero: true, ticks: { precision: 0 } }, y: { stacked: !!stacked, ticks: { autoSkip: false } } },
      },
    });
  }

  function emptyRow(tbody, cols, text) {
    tbody.replaceChildren(el('tr', {}, el('td', { colSpan: cols, className: 'empty', textContent: text })));
  }

  function renderCommands(body) {
    const rows = body.commands || [];
    const top = rows.slice(0, MAX_BARS);
    hbar('chart-commands', 'chart-commands-box', top.map((c) => c.name), [
      { label: 'Succeeded', data: top.map((c) => c.count - c.failures), backgroundColor: OK },
      { label: 'Failed', data: top.map((c) => c.failures), backgroundColor: BAD },
    ], true);
    const tbody = $('table-commands').tBodies[0];
    if (!rows.length) emptyRow(tbody, 7, body.suppressed_rows ? 'Every command was used by ' + kSuppressed() + '.' : 'No commands in this range.');
    else tbody.replaceChildren(...rows.map((c) => {
      const tr = el('tr', {},
        el('th', { scope: 'row' }, el('code', { textContent: c.name })),
        el('td', { className: 'num', textContent: fmt(c.count) }),
        el('td', { className: 'num hide-narrow', textContent: fmt(c.failures) }),
        el('td', { className: 'num' + (c.failure_rate >= 0.1 ? ' bad' : ''), textContent: pct(c.failure_rate) }),
        el('td', { className: 'num', textContent: fmt(c.installs) }),
        el('td', { className: 'num hide-narrow', textContent: ms(c.p50_ms) }),
        el('td', { className: 'num', textContent: ms(c.p95_ms) }));
      tr.dataset.command = c.name;
      tr.dataset.count = c.count;
      tr.dataset.failures = c.failures;
      return tr;
    }));
    noteSuppressed('note-commands', body, 'command');
  }

  function renderErrors(body) {
    const rows = body.errors || [];
    const max = rows.reduce((m, e) => Math.max(m, e.count), 0) || 1;
    const tbody = $('table-errors').tBodies[0];
    if (!rows.length) emptyRow(tbody, 5, body.suppressed_rows ? 'Every error code was seen by ' + kSuppressed() + '.' : 'No failures in this range.');
    else tbody.replaceChildren(...rows.slice(0, 50).map((e) => {
      const bar = el('div', { className: 'bar' });
      bar.style.width = Math.round((e.count / max) * 100) + '%';
      const tr = el('tr', {},
        el('td', {}, el('code', { textContent: e.command })),
        el('td', {}, el('code', { textContent: e.error_code || '(none)' })),
        el('td', { className: 'num', textContent: fmt(e.count) }),
        el('td', { className: 'num', textContent: fmt(e.installs) }),
        el('td', { className: 'bar-cell hide-narrow', ariaHidden: 'true' }, bar));
      tr.dataset.count = e.count;
      return tr;
    }));
    noteSuppressed('note-errors', body, 'error code');
  }

  function renderVersions(body) {
    const buckets = body.buckets || [];
    const starts = [...new Set((state.data.timeseries.buckets || []).map((b) => b.start).concat(buckets.map((b) => b.start)))].sort();
    const ranked = (body.versions || []).map((v) => v.version);
    const shown = ranked.slice(0, MAX_VERSIONS);
    const series = new Map(shown.map((v) => [v, new Map()]));
    const other = new Map();
    let anyOther = false;
    for (const b of buckets) {
      if (b.installs === null) continue;
      const target = series.get(b.version);
      if (target) target.set(b.start, (target.get(b.start) || 0) + b.installs);
      else { other.set(b.start, (other.get(b.start) || 0) + b.installs); anyOther = true; }
    }
    const datasets = shown.map((v, i) => ({
      label: v, data: starts.map((s) => series.get(v).get(s) || 0), fill: i === 0 ? 'origin' : '-1',
      borderColor: PALETTE[i % PALETTE.length], backgroundColor: PALETTE[i % PALETTE.length] + 'B3', pointRadius: 0, tension: 0,
    }));
    if (anyOther) datasets.push({ label: 'other', data: starts.map((s) => other.get(s) || 0), fill: datasets.length ? '-1' : 'origin', borderColor: '#7f8c8d', backgroundColor: '#7f8c8dB3', pointRadius: 0 });
    $('chart-versions').parentElement.hidden = datasets.length === 0;
    chart('chart-versions', {
      type: 'line',
      data: { labels: starts, datasets },
      options: { scales: { x: { ticks: { maxRotation: 0, autoSkip: true } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
    });
    const n = buckets.filter((b) => b.suppressed).length;
    const parts = [];
    if (body.suppressed_rows) parts.push(body.suppressed_rows + ' version' + (body.suppressed_rows === 1 ? '' : 's') + ' used by ' + kSuppressed() + ' not shown.');
    if (n) parts.push(n + ' version-day cell' + (n === 1 ? '' : 's') + ' with ' + kSuppressed() + ' not shown.');
    $('note-versions').textContent = parts.join(' ');
  }

  function renderPlatforms(body) {
    const rows = (body.platforms || []).slice(0, MAX_BARS);
    hbar('chart-platforms', 'chart-platforms-box', rows.map((p) => p.os + '/' + p.arch), [
      { label: 'Installs', data: rows.map((p) => p.installs), backgroundColor: PALETTE.slice(0, rows.length).concat(Array(Math.max(0, rows.length - PALETTE.length)).fill('#7f8c8d')) },
    ]);
    noteSuppressed('note-platforms', body, 'platform');
  }

  function renderFeatures(body) {
    const f = (body.features || []).slice(0, MAX_BARS);
    const m = (body.methods || []).slice(0, MAX_BARS);
    hbar('chart-features', 'chart-features-box', f.map((x) => x.name), [{ label: 'Uses', data: f.map((x) => x.count), backgroundColor: PALETTE[2] }]);
    hbar('chart-methods', 'chart-methods-box', m.map((x) => x.name), [{ label: 'Calls', data: m.map((x) => x.count), backgroundColor: PALETTE[3] }]);
    const parts = [];
    if (!f.length && !body.suppressed_rows) parts.push('No features recorded in this range.');
    if (!m.length && !body.suppressed_rows) parts.push('No methods recorded in this range.');
    if (body.suppressed_rows) parts.push(body.suppressed_rows + ' name' + (body.suppressed_rows === 1 ? '' : 's') + ' used by ' + kSuppressed() + ' not shown.');
    $('note-features').textContent = parts.join(' ');
  }

  // ---------- CSV export ----------
  // Cells that a spreadsheet would run as a formula (=, +, -, @, tab, CR) get a leading quote.
  function cell(v) {
    if (v === null || v === undefined) return '';
    let s = String(v);
    if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s)) s = "'" + s;
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function csvOf(name) {
    const d = state.data;
    const table = {
      timeseries: () => [['start', 'events', 'invocations', 'failures', 'active_installs', 'suppressed'],
        ...d.timeseries.buckets.map((b) => [b.start, b.events, b.invocations, b.failures, b.active_installs, !!b.suppressed])],
      installs: () => [['start', 'active_installs', 'suppressed'], ...d.timeseries.buckets.map((b) => [b.start, b.active_installs, !!b.suppressed])],
      commands: () => [['command', 'count', 'failures', 'failure_rate', 'installs', 'p50_ms', 'p95_ms'],
        ...d.commands.commands.map((c) => [c.name, c.count, c.failures, c.failure_rate, c.installs, c.p50_ms, c.p95_ms])],
      errors: () => [['command', 'error_code', 'count', 'installs'], ...d.errors.errors.map((e) => [e.command, e.error_code, e.count, e.installs])],
      versions: () => [['start', 'version', 'installs', 'suppressed'], ...d.versions.buckets.map((b) => [b.start, b.version, b.installs, !!b.suppressed])],
      platforms: () => [['os', 'arch', 'installs', 'events'], ...d.platforms.platforms.map((p) => [p.os, p.arch, p.installs, p.events])],
      features: () => [['kind', 'name', 'count', 'installs'],
        ...d.features.features.map((f) => ['feature', f.name, f.count, f.installs]),
        ...(d.features.methods || []).map((m) => ['method', m.name, m.count, m.installs])],
    }[name];
    return table().map((r) => r.map(cell).join(',')).join('\r\n') + '\r\n';
  }
  function exportCsv(name) {
    if (!state.data[name === 'installs' ? 'timeseries' : name]) return;
    const blob = new Blob([csvOf(name)], { type: 'text/csv;charset=utf-8' });
    const url = URL.createObjectURL(blob);
    const range = state.range === 'custom' ? state.from + '_' + state.to : state.range;
    const a = el('a', { href: url, download: state.project + '-' + name + '-' + range + '.csv' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    setStatus('Exported ' + a.download + '.');
  }

  // ---------- events ----------
  function wire() {
    $('signin').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const t = $('token').value.trim();
      if (!t) return;
      state.token = t;
      try {
        await loadProjects();
      } catch (e) {
        state.token = null;
        if (e.status === 401) showSignin('The admin token was not accepted: check it and try again.');
        else showSignin(e.message);
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, t);
      $('token').value = '';
      showDashboard();
      await loadPanels();
    });
    $('signout').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      state.token = null;
      showSignin('Signed out.');
    });
    $('project').addEventListener('change', (ev) => { state.project = ev.target.value; loadPanels(); });
    for (const b of document.querySelectorAll('.range')) {
      b.addEventListener('click', () => {
        if (b.dataset.range === 'custom') {
          state.range = 'custom';
          if (!state.from) {
            const to = new Date();
            const from = new Date(to.getTime() - 13 * 86400000);
            state.from = from.toISOString().slice(0, 10);
            state.to = to.toISOString().slice(0, 10);
          }
          syncControls();
          $('from').focus();
          return;
        }
        state.range = b.dataset.range;
        loadPanels();
      });
    }
    $('controls').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const from = $('from').value;
      const to = $('to').value;
      if (!from || !to || from > to) { showAlert('Pick a "from" date on or before the "to" date.'); return; }
      state.range = 'custom';
      state.from = from;
      state.to = to;
      loadPanels();
    });
    for (const b of document.querySelectorAll('.csv')) {
      // Seven "Export CSV" buttons: give each a name that says which panel it exports.
      const title = b.closest('section').querySelector('h2').textContent;
      b.setAttribute('aria-label', 'Export ' + title + ' as CSV');
      b.addEventListener('click', () => exportCsv(b.dataset.csv));
    }
    window.addEventListener('hashchange', () => { readHash(); loadPanels(); });
  }

  async function start() {
    if (typeof Chart === 'undefined') { showAlert('The chart library did not load.'); return; }
    Chart.defaults.color = '#1b1f24';
    Chart.defaults.borderColor = '#e3e6eb';
    Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
    wire();
    readHash();
    if (publicProject) {
      $('mode-badge').hidden = false;
      $('project').hidden = true;
      $('project').previousElementSibling.hidden = true;
      $('project-name').hidden = false;
      $('project-name').textContent = publicProject;
      $('signout').hidden = true;
      $('foot').textContent = 'Public, read-only view. Numbers from fewer than k installs are hidden to protect their privacy.';
      showDashboard();
      await loadPanels();
      return;
    }
    if (!state.token) { showSignin(''); return; }
    try {
      await loadProjects();
    } catch (e) {
      handleError(e);
      if (e.status !== 401) showSignin(e.message);
      return;
    }
    showDashboard();
    await loadPanels();
  }

  document.addEventListener('DOMContentLoaded', start);
})();
