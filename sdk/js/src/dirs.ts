/**
 * Where optel keeps files, the same places as the Rust SDK (which uses the `directories` crate):
 *
 * | | Linux and other Unix | macOS | Windows |
 * |---|---|---|---|
 * | config dir | `$XDG_CONFIG_HOME` or `~/.config` | `~/Library/Application Support` | `%APPDATA%` |
 * | data dir | `$XDG_DATA_HOME` or `~/.local/share` | `~/Library/Application Support` | `%APPDATA%` |
 *
 * Consent files live in `<config dir>/optel/`, the install secret and the queue in
 * `<data dir>/optel/<tool>/`, so a Rust tool and a Node.js tool of the same name share them.
 */
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';

function home(env: NodeJS.ProcessEnv): string | undefined {
  const h = env.HOME && env.HOME.length > 0 ? env.HOME : safeHomedir();
  return h && h.length > 0 ? h : undefined;
}

function safeHomedir(): string | undefined {
  try {
    return homedir();
  } catch {
    return undefined;
  }
}

function xdg(env: NodeJS.ProcessEnv, name: string, fallback: string[]): string | undefined {
  const v = env[name];
  if (v && isAbsolute(v)) return v;
  const h = home(env);
  return h ? join(h, ...fallback) : undefined;
}

/** The platform config directory. */
export function platformConfigDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (process.platform === 'win32') return env.APPDATA || undefined;
  if (process.platform === 'darwin') {
    const h = home(env);
    return h ? join(h, 'Library', 'Application Support') : undefined;
  }
  return xdg(env, 'XDG_CONFIG_HOME', ['.config']);
}

/** The platform data directory. */
export function platformDataDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (process.platform === 'win32') return env.APPDATA || undefined;
  if (process.platform === 'darwin') {
    const h = home(env);
    return h ? join(h, 'Library', 'Application Support') : undefined;
  }
  return xdg(env, 'XDG_DATA_HOME', ['.local', 'share']);
}

/** The default data directory of `tool`: `<data dir>/optel/<tool>`. */
export function defaultDataDir(tool: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const d = platformDataDir(env);
  return d ? join(d, 'optel', tool) : undefined;
}

/** `process.platform` as Rust's `std::env::consts::OS`, so both SDKs report the same OS names. */
export function rustOs(platform: string = process.platform): string {
  switch (platform) {
    case 'darwin':
      return 'macos';
    case 'win32':
      return 'windows';
    case 'sunos':
      return 'solaris';
    default:
      return platform.toLowerCase().replace(/[^a-z0-9_]/g, '_').slice(0, 32) || 'unknown';
  }
}

/** `process.arch` as Rust's `std::env::consts::ARCH`. */
export function rustArch(arch: string = process.arch): string {
  switch (arch) {
    case 'x64':
      return 'x86_64';
    case 'arm64':
      return 'aarch64';
    case 'ia32':
      return 'x86';
    case 'ppc64':
      return 'powerpc64';
    case 'ppc':
      return 'powerpc';
    case 'loong64':
      return 'loongarch64';
    case 'mipsel':
    case 'mips':
      return 'mips';
    default:
      return arch.toLowerCase().replace(/[^a-z0-9_]/g, '_').slice(0, 32) || 'unknown';
  }
}
