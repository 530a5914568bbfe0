// Makes the README's pictures: docs/img/dashboard.png (the dashboard at laptop width) and
// docs/img/optel-stats.png (`optel stats` in a terminal, its ANSI colours rendered to HTML), from
// a real collector loaded with a month of synthetic usage of the `acme` example tool.
//
// Run: cargo build -p optel-cli && cd tests/browser && npm ci && npm run screenshots
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import { chromium } from 'playwright-core';
import { startCollector, OPTEL } from './collector.mjs';

const OUT = fileURLToPath(new URL('../../docs/img/', import.meta.url));
const DAY = 86400000;

// A deterministic pseudo-random sequence, so the pictures only change when the code does.
let seed = 42;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const pick = (items) => { let r = rand() * items.reduce((s, [, w]) => s + w, 0); for (const [v, w] of items) { if ((r -= w) < 0) return v; } return items[0][0]; };

async function loadMonth(c) {
  const commands = [['build', 40], ['test', 25], ['check', 15], ['run', 10], ['init', 4], ['publish', 3]];
  const errors = { build: 'E_NO_MANIFEST', test: 'E_TEST_FAILED', check: 'E_INVALID_MANIFEST', run: 'E_EXIT_CODE', publish: 'E_AUTH' };
  const fail = { build: 0.06, test: 0.14, check: 0.04, run: 0.08, init: 0.01, publish: 0.2 };
  const ms = { build: 900, test: 2400, check: 150, run: 600, init: 20, publish: 3000 };
  const platforms = [[['linux', 'x86_64'], 55], [['macos', 'aarch64'], 25], [['windows', 'x86_64'], 12], [['linux', 'aarch64'], 8]];
  for (let i = 0; i < 60; i++) {
    const [os, arch] = pick(platforms);
    const firstDay = Math.floor(rand() * 30);
    for (let day = firstDay; day >= 0; day -= 1 + Math.floor(rand() * 3)) {
      // Versions roll out over the month: 0.3.0 ships 12 days ago, 0.3.1 four days ago.
      const version = day < 4 && rand() < 0.7 ? '0.3.1' : day < 12 && rand() < 0.8 ? '0.3.0' : rand() < 0.7 ? '0.2.4' : '0.2.3';
      const events = [];
      const runs = 1 + Math.floor(rand() * 6);
      for (let r = 0; r < runs; r++) {
        const name = pick(commands);
        const ok = rand() >= fail[name];
        events.push({
          event_id: randomUUID(), event_type: 'command', name, session_id: randomUUID(),
          timestamp: new Date(Date.now() - day * DAY - Math.floor(rand() * 20) * 3600000 - 60000).toISOString(),
          duration_ms: Math.round(ms[name] * (0.4 + rand() * 1.6)), success: ok,
          ...(ok ? {} : { error_code: errors[name] || 'E_OTHER' }),
        });
        if (rand() < 0.3) events.push({ event_id: randomUUID(), event_type: 'feature', name: pick([['cache', 5], ['watch', 2], ['remote-build', 1]]), session_id: randomUUID(), timestamp: events[events.length - 1].timestamp });
      }
      const res = await fetch(c.url + '/v1/events', {
        method: 'POST',
        headers: { Authorization: 'Bearer ' + c.keys.acme, 'Content-Type': 'application/json' },
        body: JSON.stringify({ schema_version: 1, service_name: 'acme', service_version: version, pseudonym: 'demo-install-' + i, os, arch, events }),
      });
      if (!res.ok) throw new Error(`ingest answered ${res.status}: ${await res.text()}`);
    }
  }
}

function ansiToHtml(text) {
  const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const cls = { 1: 'b', 2: 'd', 31: 'r', 33: 'y', 36: 'c' };
  let html = '';
  let open = 0;
  for (const part of text.split(/(\x1b\[[0-9;]*m)/)) {
    const m = part.match(/^\x1b\[([0-9;]*)m$/);
    if (!m) { html += esc(part); continue; }
    if (m[1] === '0' || m[1] === '') { html += '</span>'.repeat(open); open = 0; continue; }
    html += `<span class="${cls[m[1]] || ''}">`;
    open++;
  }
  return html + '</span>'.repeat(open);
}

mkdirSync(OUT, { recursive: true });
// Hundreds of small batches from one address: lift the per-address ingest rate limit.
const c = await startCollector({ extraArgs: ['--rate-per-addr', '0'] });
const profile = mkdtempSync(join(tmpdir(), 'optel-chromium-'));
try {
  await loadMonth(c);
  const stats = execFileSync(OPTEL, ['stats', '--server', c.url, '--project', 'acme', '--since', '30d', '--color', 'always'], {
    encoding: 'utf8', env: { ...process.env, OPTEL_ADMIN_TOKEN: c.token, COLUMNS: '96' },
  });
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await ctx.newPage();
  await page.goto(c.url + '/#project=acme&range=30d');
  await page.getByLabel('Admin token').fill(c.token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForFunction(() => document.body.dataset.loaded && !document.getElementById('main').hasAttribute('aria-busy'));
  await page.screenshot({ path: join(OUT, 'dashboard.png'), fullPage: true });

  const term = await ctx.newPage();
  await term.setViewportSize({ width: 900, height: 400 });
  await term.setContent(`<!doctype html><style>
    body { margin: 0; background: #1e1e2e; }
    .win { margin: 16px; border-radius: 8px; background: #11111b; box-shadow: 0 4px 16px #0008; }
    .bar { padding: 8px 12px; color: #a6adc8; font: 13px system-ui, sans-serif; border-bottom: 1px solid #313244; }
    pre { margin: 0; padding: 12px 16px 16px; color: #cdd6f4; font: 14px/1.35 "DejaVu Sans Mono", monospace; }
    .b { font-weight: 700; color: #ffffff; } .d { color: #9399b2; } .r { color: #f38ba8; } .y { color: #f9e2af; } .c { color: #89dceb; }
    </style><div class="win"><div class="bar">$ optel stats --project acme --since 30d</div><pre>${ansiToHtml(stats)}</pre></div>`);
  await term.locator('.win').screenshot({ path: join(OUT, 'optel-stats.png') });
  await ctx.close();
  console.log(`wrote ${join(OUT, 'dashboard.png')} and ${join(OUT, 'optel-stats.png')}`);
} finally {
  await c.stop();
  rmSync(profile, { recursive: true, force: true });
}
