/**
 * Redaction: free-form strings lose anything that identifies a person, a machine or a secret
 * before they are stored anywhere (memory, queue, ledger, wire). A port of
 * `crates/optel/src/redact.rs`, rule for rule and in the same order; the shared table
 * `sdk/fixtures/redaction.json` pins both.
 *
 * | what | becomes |
 * |---|---|
 * | URL with credentials, a query string or an IP host | `<url>` |
 * | JWT, AWS access key id, GitHub and Slack tokens | `<token>` |
 * | `key=`/`secret=`/`token=`/`password=` forms | `api_key=<redacted>` |
 * | e-mail address | `<email>` |
 * | absolute or home path | `<path>` |
 * | IPv4 / IPv6 address | `<ip>` |
 *
 * The result is cut to 256 bytes of UTF-8 on a character boundary.
 */
import { limits } from './wire.js';

const URL_RE = /[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s<>]+/g;
const IPV4_RE = /\b[0-9]{1,3}(?:\.[0-9]+){3,}\b/g;

const RULES: ReadonlyArray<[RegExp, string]> = [
  [/eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g, '<token>'],
  [/\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b/g, '<token>'],
  [/\bgh[pousr]_[A-Za-z0-9]{30,}\b/g, '<token>'],
  [/\bgithub_pat_[A-Za-z0-9_]{20,}/g, '<token>'],
  [/\bxox[abposr]-[A-Za-z0-9-]{10,}/g, '<token>'],
  [
    /\b([a-z0-9_.-]*(?:key|secret|token|password|passwd|pwd|credential|auth)[a-z0-9_.-]*)(\s*[=:]\s*)([^\s&;,]+)/gi,
    '$1$2<redacted>',
  ],
  [/[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g, '<email>'],
  // Absolute Unix paths, home paths and Windows drive or UNC paths, where a path starts.
  [/(^|[\s"'=:(,])(?:~[/\\]|~$|\/|[A-Za-z]:[\\/]|\\\\)[^\s"',)]*/g, '$1<path>'],
];

/** Redacts `input` (see the module docs). */
export function redact(input: string): string {
  let s = input;
  // URLs first, so that the path rule does not cut them in half.
  if (s.includes('://')) {
    s = s.replace(URL_RE, (m) => {
      const afterScheme = m.split('://')[1] ?? '';
      const authority = afterScheme.split(/[/?#]/)[0] ?? '';
      return authority.includes('@') || m.includes('?') || isIpHost(authority) ? '<url>' : m;
    });
  }
  let out: string;
  if (s.includes('://')) {
    // Kept URLs are not touched by the other rules.
    out = '';
    let last = 0;
    URL_RE.lastIndex = 0;
    for (const m of s.matchAll(URL_RE)) {
      const start = m.index ?? 0;
      out += applyRules(s.slice(last, start)) + m[0];
      last = start + m[0].length;
    }
    out += applyRules(s.slice(last));
  } else {
    out = applyRules(s);
  }
  return truncateUtf8(out, limits.MAX_STRING_VALUE_BYTES);
}

function applyRules(input: string): string {
  if (input.length === 0) return input;
  let s = input;
  for (const [re, with_] of RULES) s = s.replace(re, with_);
  s = s.replace(IPV4_RE, (m) => (parseIpv4(m) ? '<ip>' : m));
  return s.includes(':') ? redactIpv6(s) : s;
}

function isTokChar(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 58 || c === 46 || c === 37 || c === 91 || c === 93;
}

/** Replaces whole tokens (runs of `[0-9A-Za-z:.%\[\]]`) that parse as IPv6 addresses. */
function redactIpv6(s: string): string {
  let out = '';
  let i = 0;
  while (i < s.length) {
    if (!isTokChar(s.charCodeAt(i))) {
      out += s[i];
      i++;
      continue;
    }
    let j = i;
    while (j < s.length && isTokChar(s.charCodeAt(j))) j++;
    const tok = s.slice(i, j);
    out += looksIpv6(tok) ? '<ip>' : tok;
    i = j;
  }
  return out;
}

function looksIpv6(tok: string): boolean {
  if (tok.split(':').length - 1 < 2) return false;
  let t = tok;
  if (t.startsWith('[')) t = t.slice(1).split(']')[0] ?? '';
  t = t.split('%')[0] ?? '';
  return parseIpv6(t);
}

function isIpHost(authority: string): boolean {
  const at = authority.lastIndexOf('@');
  const host = at >= 0 ? authority.slice(at + 1) : authority;
  const h = host.startsWith('[') ? (host.slice(1).split(']')[0] ?? '') : (host.split(':')[0] ?? '');
  return parseIpv4(h) || parseIpv6(h);
}

/** Rust's `Ipv4Addr::from_str`: four decimal octets, no leading zeros, each at most 255. */
export function parseIpv4(s: string): boolean {
  const parts = s.split('.');
  if (parts.length !== 4) return false;
  return parts.every((p) => /^[0-9]{1,3}$/.test(p) && !(p.length > 1 && p[0] === '0') && Number(p) <= 255);
}

/** Rust's `Ipv6Addr::from_str`: 8 groups of 1-4 hex digits, `::` for one or more zero groups, an IPv4 tail. */
export function parseIpv6(s: string): boolean {
  const groups = (part: string, allowV4Tail: boolean): number | null => {
    if (part === '') return 0;
    const gs = part.split(':');
    let n = 0;
    for (let i = 0; i < gs.length; i++) {
      const g = gs[i] ?? '';
      if (i === gs.length - 1 && allowV4Tail && g.includes('.')) {
        if (!parseIpv4(g)) return null;
        n += 2;
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(g)) {
        n += 1;
      } else {
        return null;
      }
    }
    return n;
  };
  const dbl = s.indexOf('::');
  if (dbl < 0) return groups(s, true) === 8;
  if (s.indexOf('::', dbl + 1) >= 0) return false;
  const head = groups(s.slice(0, dbl), false);
  const tail = groups(s.slice(dbl + 2), true);
  if (head === null || tail === null) return false;
  return head + tail <= 7;
}

/** Cuts `s` to at most `max` bytes of UTF-8, on a character boundary. */
export function truncateUtf8(s: string, max: number): string {
  if (s.length * 3 <= max) return s;
  let bytes = 0;
  let i = 0;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    let len = 1;
    let units = 1;
    if (c >= 0x80 && c < 0x800) len = 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      len = 4;
      units = 2;
    } else if (c >= 0x800) len = 3;
    if (bytes + len > max) return s.slice(0, i);
    bytes += len;
    i += units;
  }
  return s;
}
