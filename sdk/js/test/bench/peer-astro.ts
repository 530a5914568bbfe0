// The peer of the exit-latency harness: the example CLI's `check` with Astro's telemetry module
// (`@astrojs/telemetry`, pinned in devDependencies: the module the `astro` CLI records with) in
// place of optel, used as that CLI uses it: one `record()` per command, awaited (its `fetch` keeps
// the process alive until the answer anyway).
//
//   node build/test/bench/peer-astro.js check DIR
//
// Off: `ASTRO_TELEMETRY_DISABLED=1` (its documented switch). Astro posts to a fixed HTTPS URL;
// with `PEER_TELEMETRY_URL` set, that request goes to the harness's local endpoint instead (the
// same body and headers), so that both SDKs are measured against 127.0.0.1.
import { AstroTelemetry } from '@astrojs/telemetry';

const acme = (await import(new URL('../../../../../examples/acme-node/src/acme.js', import.meta.url).href)) as { run(command: string, dir: string): string };

const redirect = process.env.PEER_TELEMETRY_URL;
if (redirect) {
  const real = globalThis.fetch;
  globalThis.fetch = (_url: string | URL | Request, init?: RequestInit) => real(redirect, init);
}

const telemetry = new AstroTelemetry({ astroVersion: '0.1.0', viteVersion: '0.0.0' });
const [command = 'check', dir = '.'] = process.argv.slice(2);
console.log(acme.run(command, dir));
await telemetry.record([{ eventName: 'ASTRO_CLI_SESSION_STARTED', payload: { cliCommand: command } }]);
