// The host's routes, read from /proc/net/{route,ipv6_route} of the current network namespace.
// Used twice: the default-route interface (default MTU and VTEP), and the check that an
// automatically chosen subnet does not shadow a route the host already has.
import * as fs from 'node:fs';

export interface Route4 {
  iface: string;
  /** Destination network as a 32-bit integer, and its prefix length. */
  dest: number;
  prefix: number;
}

/** /proc/net/route stores addresses little-endian in hex. */
function hexLe32(h: string): number {
  const n = Number.parseInt(h, 16);
  return (((n & 0xff) << 24) | ((n & 0xff00) << 8) | ((n >>> 8) & 0xff00) | (n >>> 24)) >>> 0;
}

function bitsSet(n: number): number {
  let c = 0;
  for (let v = n >>> 0; v; v >>>= 1) c += v & 1;
  return c;
}

export function readRoutes4(text = readOrEmpty('/proc/net/route')): Route4[] {
  const out: Route4[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    out.push({ iface: f[0], dest: hexLe32(f[1]), prefix: bitsSet(hexLe32(f[7])) });
  }
  return out;
}

export function defaultRouteInterface(): string | null {
  return readRoutes4().find((r) => r.prefix === 0)?.iface ?? null;
}

function readOrEmpty(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
