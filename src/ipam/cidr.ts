// Address math over ipaddr.js, with BigInt offsets so IPv4 and IPv6 share one code path.
import ipaddr from 'ipaddr.js';

export type Family = 4 | 6;

export interface Cidr {
  family: Family;
  /** Network address as an integer (host bits cleared). */
  base: bigint;
  prefix: number;
  /** 32 or 128. */
  bits: number;
}

/** Parses "a.b.c.d/n" or "x::y/n"; null when it is not a valid CIDR. Host bits are cleared. */
export function parseCidr(text: string): Cidr | null {
  if (typeof text !== 'string' || !text.includes('/')) return null;
  const slash = text.indexOf('/');
  const v4 = parseIpv4(text.slice(0, slash));
  if (v4 !== null) {
    const rest = text.slice(slash + 1);
    if (!/^\d+$/.test(rest)) return null;
    const prefix = Number(rest);
    if (prefix > 32) return null;
    const hostMask = (1n << BigInt(32 - prefix)) - 1n;
    return { family: 4, base: v4 & ~hostMask, prefix, bits: 32 };
  }
  if (parseIp(text.slice(0, slash)) === null) return null;
  let parsed: [ipaddr.IPv4 | ipaddr.IPv6, number];
  try {
    parsed = ipaddr.parseCIDR(text);
  } catch {
    return null;
  }
  const [addr, prefix] = parsed;
  const family: Family = addr.kind() === 'ipv4' ? 4 : 6;
  const bits = family === 4 ? 32 : 128;
  const value = bytesToBigInt(addr.toByteArray());
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  return { family, base: value & ~hostMask, prefix, bits };
}

/** True when text was written as the network address itself (no host bits set). */
export function isCanonicalCidr(text: string): boolean {
  const c = parseCidr(text);
  if (!c) return false;
  return ipToBigInt(text.split('/')[0]) === c.base;
}

/** Parses a plain IP (no mask); null when invalid. */
export function parseIp(text: string): { family: Family; value: bigint } | null {
  if (typeof text !== 'string') return null;
  const v4 = parseIpv4(text);
  if (v4 !== null) return { family: 4, value: v4 };
  if (!ipaddr.isValid(text)) return null;
  // ipaddr.isValid accepts shorthand like "10.1" (inet_aton forms): require the four-part form.
  if (!text.includes(':') && !ipaddr.IPv4.isValidFourPartDecimal(text)) return null;
  const addr = ipaddr.parse(text);
  return { family: addr.kind() === 'ipv4' ? 4 : 6, value: bytesToBigInt(addr.toByteArray()) };
}

/**
 * Dotted-quad IPv4 (four decimal parts 0..255, no leading zeros: what ipaddr.js calls
 * isValidFourPartDecimal) without ipaddr.js, whose parse tries IPv6 first and throws: it was
 * most of the allocator's own CPU per RequestAddress. null for anything else (IPv6 included).
 */
function parseIpv4(text: string): bigint | null {
  const m = IPV4.exec(text);
  if (!m) return null;
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const part = Number(m[i]);
    if (part > 255) return null;
    v = v * 256 + part;
  }
  return BigInt(v);
}

const IPV4 = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/;

export function ipToBigInt(text: string): bigint {
  const v4 = parseIpv4(text);
  if (v4 !== null) return v4;
  return bytesToBigInt(ipaddr.parse(text).toByteArray());
}

export function bigIntToIp(value: bigint, family: Family): string {
  if (family === 4) {
    const v = Number(value & 0xffffffffn);
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  const n = 16;
  const bytes: number[] = [];
  let v = value;
  for (let i = 0; i < n; i++) {
    bytes.unshift(Number(v & 0xffn));
    v >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

export function cidrToString(c: Cidr): string {
  return `${bigIntToIp(c.base, c.family)}/${c.prefix}`;
}

export function size(c: Cidr): bigint {
  return 1n << BigInt(c.bits - c.prefix);
}

export function lastAddress(c: Cidr): bigint {
  return c.base + size(c) - 1n;
}

export function containsIp(c: Cidr, ip: { family: Family; value: bigint }): boolean {
  return c.family === ip.family && ip.value >= c.base && ip.value <= lastAddress(c);
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.base <= lastAddress(b) && b.base <= lastAddress(a);
}

export function containsCidr(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && inner.prefix >= outer.prefix && inner.base >= outer.base && lastAddress(inner) <= lastAddress(outer);
}

/**
 * Addresses a host may hold in a subnet: not the network address, not IPv4 broadcast.
 * IPv4 /31 and /32 (RFC 3021) and IPv6 have no broadcast; IPv6 keeps ::0, the
 * subnet-router anycast address, out as well.
 */
export function usableRange(c: Cidr): { first: bigint; last: bigint } {
  if (c.family === 4 && c.prefix >= 31) return { first: c.base, last: lastAddress(c) };
  if (c.family === 4) return { first: c.base + 1n, last: lastAddress(c) - 1n };
  if (c.prefix >= 127) return { first: c.base, last: lastAddress(c) };
  return { first: c.base + 1n, last: lastAddress(c) };
}

function bytesToBigInt(bytes: number[]): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}
