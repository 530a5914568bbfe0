// Times the dashboard in headless Chromium over an existing data directory (fill one with
// `optel bench fill --project acme --events N --data-dir DIR`): first contentful paint, and the
// time until every panel shows its data (7 query API calls answered and drawn), for each range.
//
// Run: OPTEL_BENCH_DATA_DIR=DIR [OPTEL_BENCH_PROJECT=acme] node bench-dashboard.mjs
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';
import { OPTEL } from './collector.mjs';

const dataDir = process.env.OPTEL_BENCH_DATA_DIR;
const project = process.env.OPTEL_BENCH_PROJECT || 'acme';
const runs = Number(process.env.OPTEL_BENCH_RUNS || 5);
if (!dataDir) throw new Error('set OPTEL_BENCH_DATA_DIR to a data directory filled by `optel bench fill`');

const token = randomBytes(16).toString('hex');
const child = spawn(OPTEL, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--admin-token', token], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, OPTEL_LOG: 'warn' } });
const url = await new Promise((ok, fail) => {
  let buf = '';
  const t = setTimeout(() => fail(new Error('collector did not start:\n' + buf)), 20000);
  child.stderr.on('data', (d) => { buf += d; const m = buf.match(/listening on (http:\/\/[^\s]+)/); if (m) { clearTimeout(t); ok(m[1]); } });
});
child.stderr.resume();
const profile = mkdtempSync(join(tmpdir(), 'optel-chromium-'));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
try {
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await ctx.newPage();
  // Sign in once: the token is in this tab's sessionStorage for the loads below.
  await page.goto(url + '/');
  await page.getByLabel('Admin token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForFunction(() => document.body.dataset.loaded);
  console.log(`dashboard over ${dataDir}, project ${project}, ${runs} loads per range (median)`);
  console.log('range  first paint  all panels drawn');
  for (const range of ['24h', '7d', '30d', '90d']) {
    const fcp = [];
    const done = [];
    for (let i = 0; i < runs; i++) {
      await page.goto(`${url}/?r=${i}#project=${encodeURIComponent(project)}&range=${range}`);
      await page.waitForFunction(() => document.body.dataset.loaded && !document.getElementById('main').hasAttribute('aria-busy'), null, { timeout: 60000 });
      const t = await page.evaluate(() => ({
        fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? NaN,
        now: performance.now(),
      }));
      fcp.push(t.fcp);
      done.push(t.now);
    }
    console.log(`${range.padEnd(5)}  ${median(fcp).toFixed(0).padStart(8)} ms  ${median(done).toFixed(0).padStart(12)} ms`);
  }
  await ctx.close();
} finally {
  child.kill('SIGTERM');
  rmSync(profile, { recursive: true, force: true });
}
