// Pure encoders for rtnetlink request bodies. The `netlink` package parses replies well,
// but its encoders cannot express what vxnet needs: AttrStream masks the attribute type to
// 14 bits, so NLA_F_NESTED can never be set (the bridge reads IFLA_PROTINFO as a nested
// IFLA_BRPORT_* table only when that flag is present, else as a bare STP state byte), and
// IFLA_LINKINFO is left as an opaque Buffer. Building the bytes here keeps them explicit.
import ipaddr from 'ipaddr.js';

const NLA_ALIGN = 4;
const NLA_HDRLEN = 4;
export const NLA_F_NESTED = 0x8000;

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_BRIDGE = 7;
export const AF_INET6 = 10;

export const IFF_UP = 0x1;

export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_MASTER = 10;
export const IFLA_PROTINFO = 12;
export const IFLA_LINKINFO = 18;
export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_DATA = 2;

export const NUD_REACHABLE = 0x02;
export const NUD_NOARP = 0x40;
export const NUD_PERMANENT = 0x80;
export const NTF_SELF = 0x02;
export const NTF_MASTER = 0x04;
export const NDA_DST = 1;
export const NDA_LLADDR = 2;
export const NDA_IFINDEX = 8;

function align(n: number): number {
  return (n + NLA_ALIGN - 1) & ~(NLA_ALIGN - 1);
}

/** One netlink attribute (type-length-value), padded to 4 bytes. */
export function attr(type: number, payload: Buffer): Buffer {
  const len = NLA_HDRLEN + payload.length;
  const out = Buffer.alloc(align(len));
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  payload.copy(out, NLA_HDRLEN);
  return out;
}

/** A nested attribute, flagged NLA_F_NESTED as strict kernel parsers expect. */
export function nest(type: number, children: Buffer[]): Buffer {
  return attr(type | NLA_F_NESTED, Buffer.concat(children));
}

export function u8(v: number): Buffer {
  return Buffer.from([v & 0xff]);
}

export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return b;
}

/** Big-endian u16: used for UDP ports (IFLA_VXLAN_PORT). */
export function be16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v, 0);
  return b;
}

/** NUL-terminated string, as IFLA_IFNAME and IFLA_INFO_KIND require. */
export function str(v: string): Buffer {
  return Buffer.concat([Buffer.from(v, 'utf8'), Buffer.alloc(1)]);
}

export interface IfInfoMsg {
  family?: number;
  index?: number;
  flags?: number;
  change?: number;
}

/** struct ifinfomsg (16 bytes). */
export function ifinfomsg(m: IfInfoMsg): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(m.family ?? AF_UNSPEC, 0);
  b.writeInt32LE(m.index ?? 0, 4);
  b.writeUInt32LE(m.flags ?? 0, 8);
  b.writeUInt32LE(m.change ?? 0, 12);
  return b;
}

export interface IfAddrMsg {
  family: number;
  prefixlen: number;
  flags: number;
  scope: number;
  index: number;
}

/** struct ifaddrmsg (8 bytes). */
export function ifaddrmsg(m: IfAddrMsg): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(m.family, 0);
  b.writeUInt8(m.prefixlen, 1);
  b.writeUInt8(m.flags, 2);
  b.writeUInt8(m.scope, 3);
  b.writeUInt32LE(m.index, 4);
  return b;
}

export interface NdMsg {
  family: number;
  index: number;
  state: number;
  flags: number;
}

/** struct ndmsg (12 bytes). */
export function ndmsg(m: NdMsg): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(m.family, 0);
  b.writeInt32LE(m.index, 4);
  b.writeUInt16LE(m.state, 8);
  b.writeUInt8(m.flags, 10);
  return b;
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

export function isMac(mac: string): boolean {
  return MAC_RE.test(mac);
}

export function macToBuffer(mac: string): Buffer {
  if (!isMac(mac)) throw new TypeError(`invalid MAC address ${JSON.stringify(mac)}`);
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

export function bufferToMac(b: Buffer | undefined): string {
  if (!b || b.length !== 6) return '';
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

export interface ParsedIp {
  family: typeof AF_INET | typeof AF_INET6;
  bytes: Buffer;
}

export function ipToBuffer(ip: string): ParsedIp {
  if (!ipaddr.isValid(ip)) throw new TypeError(`invalid IP address ${JSON.stringify(ip)}`);
  const a = ipaddr.parse(ip);
  return { family: a.kind() === 'ipv4' ? AF_INET : AF_INET6, bytes: Buffer.from(a.toByteArray()) };
}

export function bufferToIp(b: Buffer | undefined): string {
  if (!b || (b.length !== 4 && b.length !== 16)) return '';
  return ipaddr.fromByteArray([...b]).toString();
}

export interface ParsedCidr extends ParsedIp {
  ip: string;
  prefixlen: number;
}

/** "10.1.0.1/24" -> address bytes and prefix length (the host part is kept: it's an interface address). */
export function parseCidr(cidr: string): ParsedCidr {
  const slash = cidr.indexOf('/');
  if (slash < 0) throw new TypeError(`invalid CIDR ${JSON.stringify(cidr)}`);
  const ip = cidr.slice(0, slash);
  const prefixlen = Number(cidr.slice(slash + 1));
  const parsed = ipToBuffer(ip);
  const max = parsed.family === AF_INET ? 32 : 128;
  if (!Number.isInteger(prefixlen) || prefixlen < 0 || prefixlen > max) {
    throw new TypeError(`invalid CIDR ${JSON.stringify(cidr)}`);
  }
  return { ...parsed, ip: bufferToIp(parsed.bytes), prefixlen };
}
