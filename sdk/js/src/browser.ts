/**
 * optel in the browser: which components of a UI library get adopted, counted per page view,
 * with nothing that outlives the page. No Node.js APIs here.
 *
 * - Counting: {@link trackComponent} records the first mount of each component (per distinct
 *   attribute set) in a page view: a `feature` event named after the component, with the
 *   attributes (strings redacted) as metadata.
 * - Sending: one batch per page view, on `pagehide`, with `navigator.sendBeacon` (or `fetch`
 *   with `keepalive`): `POST {endpoint}/v1/events?key=<browser key>`, body the optel batch JSON,
 *   `Content-Type: text/plain;charset=UTF-8` (CORS-safelisted: no preflight).
 * - Identity: the batch's pseudonym is `pv:` + 32 random hex digits drawn when the page view
 *   starts and kept in memory only; the session id is a random UUID per page view. No cookie,
 *   no `localStorage`/`sessionStorage`/IndexedDB, nothing that survives a reload.
 * - Consent: nothing is sent until the application calls {@link grantConsent} (the default is
 *   `pending`: a web page has no equivalent of the CLI's consent files, and the visitor, not the
 *   author, must agree), and never when `navigator.globalPrivacyControl` is true or
 *   `navigator.doNotTrack === "1"`, whatever the application says.
 */
import { redact } from './redact.js';
import { type AttributeValue, type Batch, type WireEvent, formatUuidV4, isValidName, limits, toHex } from './wire.js';

/** Options of {@link initBrowserTelemetry}. */
export interface BrowserOptions {
  /** The project name as the collector knows it (`service_name`), `[A-Za-z0-9_.:-]`. */
  service: string;
  /** The application or component library version. */
  version: string;
  /** The collector's base URL (or the full `/v1/events` URL). */
  endpoint: string;
  /** A browser ingest key: it can only ingest, only from the origins listed for it. */
  key: string;
  /** `granted` when the application already asked the visitor; default `pending`. */
  consent?: 'granted' | 'pending';
}

/** Component attributes: enum-like strings, numbers, booleans. */
export type ComponentAttributes = Record<string, AttributeValue | null | undefined>;

interface Nav {
  globalPrivacyControl?: boolean;
  doNotTrack?: string | null;
  sendBeacon?: (url: string, data?: BodyInit | null) => boolean;
}

interface State {
  options: BrowserOptions | undefined;
  consent: 'granted' | 'pending' | 'denied';
  pseudonym: string;
  sessionId: string;
  seen: Set<string>;
  events: WireEvent[];
  listening: boolean;
}

const state: State = {
  options: undefined,
  consent: 'pending',
  pseudonym: '',
  sessionId: '',
  seen: new Set(),
  events: [],
  listening: false,
};

function random(n: number): Uint8Array {
  const b = new Uint8Array(n);
  globalThis.crypto.getRandomValues(b);
  return b;
}

function newPageView(): void {
  state.pseudonym = `pv:${toHex(random(16))}`;
  state.sessionId = formatUuidV4(random(16));
  state.seen = new Set();
  state.events = [];
}

function nav(): Nav | undefined {
  return typeof navigator === 'undefined' ? undefined : (navigator as unknown as Nav);
}

/** Whether the browser asks not to be tracked: Global Privacy Control, or Do Not Track. */
export function browserOptedOut(): boolean {
  const n = nav();
  return n !== undefined && (n.globalPrivacyControl === true || n.doNotTrack === '1');
}

/** Configures the page's telemetry (once; later calls replace the options). Sends nothing by itself. */
export function initBrowserTelemetry(options: BrowserOptions): void {
  state.options = options;
  if (options.consent === 'granted' && state.consent === 'pending') state.consent = 'granted';
  if (!state.pseudonym) newPageView();
  if (!state.listening && typeof addEventListener === 'function') {
    state.listening = true;
    addEventListener('pagehide', () => flushPageView());
    // A page restored from the back/forward cache is a new page view.
    addEventListener('pageshow', (e) => {
      if ((e as PageTransitionEvent).persisted) newPageView();
    });
  }
}

/** The visitor agreed: this page view's batch will be sent when the page is hidden. */
export function grantConsent(): void {
  state.consent = 'granted';
}

/** The visitor declined: nothing is sent, and what was counted is forgotten. */
export function revokeConsent(): void {
  state.consent = 'denied';
  state.events = [];
}

/** The current consent: `pending` (the default), `granted` or `denied`; GPC/DNT override it. */
export function consentState(): 'granted' | 'pending' | 'denied' {
  return browserOptedOut() ? 'denied' : state.consent;
}

/** Counts the first mount of component `name` (with these attributes) in this page view. */
export function trackComponent(name: string, attributes?: ComponentAttributes): void {
  if (state.consent === 'denied' || browserOptedOut()) return;
  if (!state.pseudonym) newPageView();
  const key = attributes ? `${name}\u0000${JSON.stringify(Object.entries(attributes).sort())}` : name;
  if (state.seen.has(key) || state.events.length >= limits.MAX_BATCH_EVENTS || !isValidName(name)) return;
  state.seen.add(key);
  const e: WireEvent = {
    event_id: formatUuidV4(random(16)),
    event_type: 'feature',
    name,
    timestamp: new Date().toISOString(),
    session_id: state.sessionId,
  };
  if (attributes) {
    const md: Record<string, AttributeValue> = {};
    let n = 0;
    for (const k of Object.keys(attributes).sort()) {
      const v = attributes[k];
      if (!isValidName(k) || n >= limits.MAX_ATTRIBUTES) continue;
      if (typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))) md[k] = v;
      else if (typeof v === 'string') md[k] = redact(v);
      else continue;
      n++;
    }
    if (n > 0) e.metadata = md;
  }
  state.events.push(e);
}

/** The batch this page view would send now (for a "show me the data" view), or `undefined`. */
export function pendingBatch(): Batch | undefined {
  const o = state.options;
  if (!o || state.events.length === 0) return undefined;
  return {
    schema_version: 1,
    service_name: o.service,
    service_version: o.version,
    pseudonym: state.pseudonym,
    os: 'browser',
    arch: 'unknown',
    dropped_events: 0,
    events: state.events.slice(),
  };
}

/** The ingest URL of the browser contract: `{endpoint}/v1/events?key=<key>`. */
export function browserEventsUrl(endpoint: string, key: string): string {
  const t = endpoint.replace(/\/+$/, '');
  return `${t.endsWith('/v1/events') ? t : `${t}/v1/events`}?key=${encodeURIComponent(key)}`;
}

/**
 * Sends this page view's batch now (what `pagehide` does) and starts an empty one. Returns
 * whether a batch was handed to the browser.
 */
export function flushPageView(): boolean {
  const batch = pendingBatch();
  const o = state.options;
  state.events = [];
  if (!batch || !o || state.consent !== 'granted' || browserOptedOut()) return false;
  const url = browserEventsUrl(o.endpoint, o.key);
  const body = JSON.stringify(batch);
  const n = nav();
  try {
    if (n?.sendBeacon && n.sendBeacon(url, body)) return true;
  } catch {
    // fall back to fetch
  }
  if (typeof fetch !== 'function') return false;
  void fetch(url, { method: 'POST', body, keepalive: true, mode: 'no-cors', credentials: 'omit', headers: { 'Content-Type': 'text/plain;charset=UTF-8' } }).catch(() => {});
  return true;
}
