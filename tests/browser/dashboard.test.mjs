// End-to-end tests of the optel dashboard in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core; no browser download), against a real `optel serve` loaded with
// fixture data through real ingest POSTs. Screenshots go to artifacts/ (desktop and phone).
//
// Run: cargo build -p optel-cli && cd tests/browser && npm ci && npm test
// Env: OPTEL_BIN (default ../../target/debug/optel), CHROMIUM (default /usr/bin/chromium).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startCollector, loadFixtures, query } from './collector.mjs';

const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };

let collector;
let context;
const profiles = [];

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  collector = await startCollector();
  await loadFixtures(collector);
  context = await launch(DESKTOP, 1);
});

after(async () => {
  if (context) await context.close();
  if (collector) await collector.stop();
  for (const p of profiles) rmSync(p, { recursive: true, force: true });
});

/** Chromium with a fresh profile directory (--user-data-dir), closed by the caller. */
async function launch(viewport, deviceScaleFactor) {
  const profile = mkdtempSync(join(tmpdir(), 'optel-chromium-'));
  profiles.push(profile);
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    deviceScaleFactor,
    acceptDownloads: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** A new tab that records page errors and any request to another origin. */
async function newPage(ctx = context) {
  const page = await ctx.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.on('requestfailed', (r) => page.errors.push('request failed: ' + r.url()));
  page.on('request', (r) => {
    if (!r.url().startsWith(collector.url) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) {
      page.errors.push('request to another origin: ' + r.url());
    }
  });
  return page;
}

/** Waits until the panels finished loading after `previous` (the body's data-loaded counter). */
async function loaded(page, previous = null) {
  await page.waitForFunction(
    (prev) => document.body.dataset.loaded && document.body.dataset.loaded !== prev && !document.getElementById('main').hasAttribute('aria-busy'),
    previous,
    { timeout: 15000 },
  );
  return page.evaluate(() => document.body.dataset.loaded);
}

async function signIn(page, token = collector.token) {
  await page.goto(collector.url + '/');
  await page.getByLabel('Admin token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

async function kpi(page, id) {
  return page.getAttribute('#' + id, 'data-value');
}

/** The panels show exactly what the query API answers for `project` and `q`. */
async function assertPanelsMatchApi(page, project, q) {
  const base = `/v1/projects/${project}`;
  const [o, commands, ts, versions] = await Promise.all(
    ['overview', 'commands', 'timeseries', 'versions'].map((r) => query(collector, `${base}/${r}?${q}`)),
  );
  assert.equal(await kpi(page, 'kpi-invocations'), String(o.invocations));
  assert.equal(await kpi(page, 'kpi-active'), String(o.active_installs));
  assert.equal(await kpi(page, 'kpi-dau'), String(o.dau));
  assert.equal(await kpi(page, 'kpi-wau'), String(o.wau));
  assert.equal(await kpi(page, 'kpi-mau'), String(o.mau));
  const rows = await page.$$eval('#table-commands tbody tr[data-command]', (trs) =>
    trs.map((tr) => ({ name: tr.dataset.command, count: Number(tr.dataset.count), failures: Number(tr.dataset.failures) })));
  assert.deepEqual(rows, commands.commands.map((c) => ({ name: c.name, count: c.count, failures: c.failures })));
  // The chart draws the API's buckets: same days, same totals.
  const chart = await page.evaluate(() => {
    const c = Chart.getChart('chart-timeseries');
    return { labels: c.data.labels, ok: c.data.datasets[0].data, failed: c.data.datasets[1].data };
  });
  assert.deepEqual(chart.labels, ts.buckets.map((b) => b.start));
  assert.deepEqual(chart.failed, ts.buckets.map((b) => b.failures));
  assert.deepEqual(chart.ok.map((n, i) => n + chart.failed[i]), ts.buckets.map((b) => b.invocations));
  const versionLabels = await page.evaluate(() => Chart.getChart('chart-versions').data.datasets.map((d) => d.label));
  assert.deepEqual(versionLabels.sort(), versions.versions.map((v) => v.version).sort());
  return { o, commands };
}

test('sign in, switch range and project, numbers match the query API, export CSV, screenshots', async () => {
  const page = await newPage();

  // A wrong token is refused with a message, and nothing is kept.
  await signIn(page, 'not-the-token');
  await page.getByText('The admin token was not accepted').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);

  await signIn(page);
  let mark = await loaded(page);
  // The token stays in this tab's sessionStorage, never in the URL.
  assert.ok(!page.url().includes(collector.token), page.url());
  assert.equal(await page.evaluate(() => sessionStorage.getItem('optel.adminToken')), collector.token);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  assert.match(page.url(), /#project=acme&range=7d$/);

  const week = await assertPanelsMatchApi(page, 'acme', 'since=7d');
  assert.equal(week.o.active_installs, 7);
  assert.ok(!week.commands.commands.some((c) => c.name === 'deploy'), 'deploy is 20 days old');

  // 30 days: the older commands appear, on the page as in the API.
  await page.getByRole('button', { name: '30d', exact: true }).click();
  mark = await loaded(page, mark);
  assert.equal(await page.getAttribute('button[data-range="30d"]', 'aria-pressed'), 'true');
  const month = await assertPanelsMatchApi(page, 'acme', 'since=30d');
  assert.ok(month.o.invocations > week.o.invocations);
  assert.ok(await page.locator('#table-commands tr[data-command="deploy"]').count() === 1);

  // Export the commands panel as CSV: the file holds the API's rows.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Export Top commands as CSV' }).click(),
  ]);
  assert.equal(download.suggestedFilename(), 'acme-commands-30d.csv');
  const csv = readFileSync(await download.path(), 'utf8').trim().split('\r\n');
  assert.equal(csv[0], 'command,count,failures,failure_rate,installs,p50_ms,p95_ms');
  assert.deepEqual(
    csv.slice(1).map((l) => l.split(',').slice(0, 3).join(',')),
    month.commands.commands.map((c) => `${c.name},${c.count},${c.failures}`),
  );
  await download.saveAs(join(ARTIFACTS, 'acme-commands-30d.csv'));

  // Back to 7 days with the keyboard only: the range buttons are real buttons.
  await page.getByRole('button', { name: '7d', exact: true }).focus();
  await page.keyboard.press('Enter');
  mark = await loaded(page, mark);
  // Every chart has a text alternative, every control a label, every export button a name.
  const a11y = await page.evaluate(() => ({
    unlabelledCharts: [...document.querySelectorAll('canvas')].filter((c) => c.getAttribute('role') !== 'img' || !c.getAttribute('aria-label')).map((c) => c.id),
    unlabelledControls: [...document.querySelectorAll('input, select')].filter((e) => !e.labels || e.labels.length === 0).map((e) => e.id),
    exportNames: [...document.querySelectorAll('button.csv')].map((b) => b.getAttribute('aria-label')),
  }));
  assert.deepEqual(a11y.unlabelledCharts, []);
  assert.deepEqual(a11y.unlabelledControls, []);
  assert.equal(new Set(a11y.exportNames).size, 7);
  assert.ok(a11y.exportNames.includes('Export Top commands as CSV'));
  // Screenshot of the main page at laptop width (7 days, the default view).
  await page.screenshot({ path: join(ARTIFACTS, 'dashboard-desktop.png'), fullPage: true });

  // Custom range with the keyboard-reachable date inputs: the last 3 days.
  await page.getByRole('button', { name: 'Custom' }).click();
  const day = (n) => new Date(Date.now() - n * 86400000).toISOString().slice(0, 10);
  await page.getByLabel('From', { exact: true }).fill(day(2));
  await page.getByLabel('To', { exact: true }).fill(day(0));
  await page.getByRole('button', { name: 'Apply' }).click();
  mark = await loaded(page, mark);
  const to = new Date(day(0) + 'T00:00:00Z');
  to.setUTCDate(to.getUTCDate() + 1);
  await assertPanelsMatchApi(page, 'acme', `from=${day(2)}T00:00:00Z&to=${to.toISOString().replace('.000Z', 'Z')}&granularity=day`);

  // Switch project.
  await page.getByLabel('Project').selectOption('zeta');
  mark = await loaded(page, mark);
  assert.match(page.url(), /project=zeta/);
  const zeta = await assertPanelsMatchApi(page, 'zeta', `from=${day(2)}T00:00:00Z&to=${to.toISOString().replace('.000Z', 'Z')}&granularity=day`);
  assert.equal(zeta.o.active_installs, 2);

  // Sign out forgets the token.
  await page.getByRole('button', { name: 'Sign out' }).click();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('optel.adminToken')), null);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('analytics panels: breakdown picker, phase waterfall, adoption, release comparison, measurements', async () => {
  const page = await newPage();
  await signIn(page);
  await loaded(page);
  const before = await page.evaluate(() => document.body.dataset.loaded);
  await page.getByLabel('Project').selectOption('zeta');
  await loaded(page, before);

  // Breakdown picker: build by profile, debug 2 / release 1.
  await page.getByTestId('breakdown-picker').selectOption('command build · profile');
  const values = await page.$$eval('#table-breakdowns tbody tr[data-value]', (trs) =>
    Object.fromEntries(trs.map((tr) => [tr.dataset.value, Number(tr.dataset.count)])));
  assert.deepEqual(values, { debug: 2, release: 1 });
  assert.equal(await page.locator('#table-breakdowns').getByText('debug').count(), 1);

  // Phase waterfall: build's resolve and compile, 3 each, in the order they start, and
  // codegen nested in compile: its row right under its parent's, indented, its bar further
  // right than its parent's.
  const phases = await page.$$eval('#table-phases tbody tr[data-phase]', (trs) =>
    trs.map((tr) => ({ command: tr.dataset.command, phase: tr.dataset.phase, parent: tr.dataset.parent, depth: Number(tr.dataset.depth), count: Number(tr.dataset.count) })));
  assert.deepEqual(phases, [
    { command: 'build', phase: 'resolve', parent: '', depth: 0, count: 3 },
    { command: 'build', phase: 'compile', parent: '', depth: 0, count: 3 },
    { command: 'build', phase: 'codegen', parent: 'compile', depth: 1, count: 3 },
  ]);
  await page.locator('#table-phases').getByText('codegen').waitFor();
  const geometry = await page.$$eval('#table-phases tbody tr[data-phase]', (trs) => Object.fromEntries(trs.map((tr) => [tr.dataset.phase, {
    indent: parseFloat(getComputedStyle(tr.cells[0]).paddingLeft),
    left: parseFloat(tr.querySelector('.wf-p50').style.left),
    title: tr.querySelector('.waterfall').title,
  }])));
  assert.ok(geometry.codegen.indent > geometry.compile.indent, JSON.stringify(geometry));
  assert.equal(geometry.compile.indent, geometry.resolve.indent);
  assert.ok(geometry.codegen.left > geometry.compile.left && geometry.compile.left > geometry.resolve.left, JSON.stringify(geometry));
  assert.match(geometry.codegen.title, /in compile.*p95/);

  // Measurements: files, 3 values summing to 62.
  const files = await page.$eval('#table-measurements tr[data-name="files"]', (tr) => ({ count: Number(tr.dataset.count), sum: Number(tr.dataset.sum) }));
  assert.deepEqual(files, { count: 3, sum: 62 });

  // Feature adoption: the chart draws the API's daily series.
  const adoption = await query(collector, '/v1/projects/zeta/adoption?since=7d');
  const drawn = await page.evaluate(() => Chart.getChart('chart-adoption').data.datasets.map((d) => ({ label: d.label, total: d.data.reduce((a, b) => a + b, 0) })));
  assert.deepEqual(drawn, adoption.series.slice(0, 6).map((s) => ({ label: s.event_type + ' ' + s.name, total: s.count })));
  assert.ok(drawn.some((d) => d.label === 'feature strict' && d.total === 1), JSON.stringify(drawn));

  // Release comparison: 1.1.0 against 1.0.0, per command.
  await page.getByText('Version 1.1.0 against 1.0.0').waitFor();
  const release = await page.$$eval('#table-release tbody tr[data-command]', (trs) => trs.map((tr) => tr.dataset.command).sort());
  assert.deepEqual(release, ['build', 'sync']);
  await page.screenshot({ path: ARTIFACTS + 'analytics-desktop.png', fullPage: true });
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('phone width: the panels stack and stay legible', async () => {
  const phone = await launch(PHONE, 2);
  const page = await newPage(phone);
  await signIn(page);
  await loaded(page);
  await assertPanelsMatchApi(page, 'acme', 'since=7d');
  // Nothing wider than the screen except inside the scrollable table wrapper.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than the phone`);
  await page.screenshot({ path: join(ARTIFACTS, 'dashboard-phone.png'), fullPage: true });
  assert.deepEqual(page.errors, []);
  await phone.close();
});

test('public page: read-only, no token, small cells shown as "fewer than k installs"', async () => {
  const page = await newPage();
  // Not public yet: the page says so, exactly as for an unknown project.
  await page.goto(collector.url + '/public/acme');
  await page.getByText('There is no public project named "acme"').waitFor();

  collector.setPublic('acme', true);
  await page.goto(collector.url + '/public/acme#range=30d');
  await loaded(page);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  assert.equal(await page.locator('#signin').isVisible(), false);
  assert.equal(await page.locator('#signout').isVisible(), false);
  const pub = await (await fetch(collector.url + '/public/v1/projects/acme/commands?since=30d')).json();
  assert.ok(pub.suppressed_rows >= 1, JSON.stringify(pub));
  const rows = await page.$$eval('#table-commands tbody tr[data-command]', (trs) => trs.map((tr) => tr.dataset.command));
  assert.deepEqual(rows, pub.commands.map((c) => c.name));
  assert.ok(!rows.includes('deploy'), 'deploy was used by 1 install: suppressed');
  await page.getByText(`used by fewer than ${pub.k} installs not shown`).first().waitFor();
  await page.screenshot({ path: join(ARTIFACTS, 'public-desktop.png'), fullPage: true });
  assert.deepEqual(page.errors, []);
  await page.close();
});
