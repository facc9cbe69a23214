// A container's flows in the host's conntrack table, forgotten when its endpoint goes (ctnetlink),
// as Docker's bridge driver does (libnetwork's clearEndpointConnections).
//
// Why: conntrack keeps a flow's NAT binding for as long as packets keep the entry alive. A client
// that keeps sending UDP to a published port from one source port (syslog, statsd, DNS) would go
// on reaching the stopped container's address, every packet refreshing the entry, and never the
// container that publishes the port now; a flow of the stopped container would carry over to the
// next container given its address. Deleting every entry that names one of the endpoint's
// addresses (either side, either direction) when the endpoint goes ends both.
//
// The kernel deletes one exact tuple per request, and a flush filters by mark or zone only, not
// by address: so matching entries are dumped and each deleted by its original tuple and zone, as
// `conntrack -D` and Docker do. Only this host's namespace is concerned: a container's own table
// goes with its namespace.
//
// What a dump costs (measured here, 2 vCPUs): every dump walks the whole conntrack hash, shared
// by all namespaces (262,144 buckets on this 24 GiB machine), 13-16 ms even when the namespace
// has no entry; and each entry sent costs ~10 us to receive and match here (10,000:
// 120-145 ms). So: no dump at all when the namespace tracks nothing (nf_conntrack_count); one
// dump of everything, matched here, while the table is small; above FILTER_ABOVE entries per
// address, dumps the kernel filters (CTA_FILTER, Linux 5.8+), per address once for entries
// whose original source it is (the container's own flows, NATed or not) and once for those
// whose reply source it is (flows to it, published ports' DNAT included), which together are
// every entry naming it: 0 entries sent for 10,000 that do not match, ~35 ms for the two walks.
// An older kernel ignores the filter and sends everything; entries are matched here either way.
import { readFile } from 'node:fs/promises';
import { createNetlink, FlagsGet } from 'netlink';
import ipaddr from 'ipaddr.js';
import { AF_INET, AF_INET6, AF_UNSPEC, attr, ipToBuffer, nest, u32 } from './nlmsg';
import { NetlinkChannel, isErrno } from './rtnl';

const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_GET = 1;
const IPCTNL_MSG_CT_DELETE = 2;
const CT_GET = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
const CT_DELETE = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;

const CTA_TUPLE_ORIG = 1;
const CTA_TUPLE_REPLY = 2;
const CTA_ZONE = 18;
const CTA_FILTER = 25;
const CTA_FILTER_ORIG_FLAGS = 1;
const CTA_FILTER_REPLY_FLAGS = 2;
/** CTA_FILTER_F_CTA_IP_SRC (the kernel's nf_internals.h): match the tuple's source address. */
const FILTER_IP_SRC = 1 << 0;
const CTA_TUPLE_IP = 1;
const CTA_IP_V4_SRC = 1;
const CTA_IP_V4_DST = 2;
const CTA_IP_V6_SRC = 3;
const CTA_IP_V6_DST = 4;
const CTA_IP_ADDRS = [CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST];
/** The kernel sets NLA_F_NESTED (and may set NLA_F_NET_BYTEORDER) on top of the type. */
const NLA_TYPE_MASK = 0x3fff;

/** struct nfgenmsg: family, version (NFNETLINK_V0), resource id (big endian). */
function nfgenmsg(family: number): Buffer {
  return Buffer.from([family, 0, 0, 0]);
}

/** The payload of the first attribute of this type in buf (no allocation per attribute skipped). */
function attrAt(buf: Buffer | undefined, type: number): Buffer | undefined {
  if (!buf) return undefined;
  for (let off = 0; off + 4 <= buf.length; off += (buf.readUInt16LE(off) + 3) & ~3) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > buf.length) return undefined;
    if ((buf.readUInt16LE(off + 2) & NLA_TYPE_MASK) === type) return buf.subarray(off + 4, off + len);
  }
  return undefined;
}

/** Whether a tuple's source or destination address is one of `wanted` (address bytes). */
function tupleNames(tuple: Buffer | undefined, wanted: Buffer[]): boolean {
  const ip = attrAt(tuple, CTA_TUPLE_IP);
  if (!ip) return false;
  for (const type of CTA_IP_ADDRS) {
    const value = attrAt(ip, type);
    if (value && wanted.some((w) => w.equals(value))) return true;
  }
  return false;
}

/** One conntrack entry as much as deleting it needs. */
export interface Flow {
  family: number;
  /** The CTA_TUPLE_ORIG payload: what the delete request names the entry by. */
  orig: Buffer;
  /** The CTA_ZONE payload, when the entry has one. */
  zone: Buffer | undefined;
}

/**
 * The entry in a ctnetlink message body (nfgenmsg and attributes) when one of its tuples has one
 * of `wanted` (address bytes, 4 or 16) as source or destination; else null. Pure. Bytes are
 * compared, not text: on a kernel that ignores the dump filter every entry comes through here.
 */
export function flowNaming(body: Buffer, wanted: Buffer[]): Flow | null {
  if (body.length < 4) return null;
  const top = body.subarray(4);
  const orig = attrAt(top, CTA_TUPLE_ORIG);
  if (!orig || !(tupleNames(orig, wanted) || tupleNames(attrAt(top, CTA_TUPLE_REPLY), wanted))) return null;
  return { family: body[0], orig, zone: attrAt(top, CTA_ZONE) };
}

/**
 * The dump request for the entries whose source in one direction (CTA_TUPLE_ORIG or _REPLY) is
 * `addr` (4 or 16 bytes), filtered by the kernel. Pure.
 */
export function dumpBody(addr: Buffer, direction: typeof CTA_TUPLE_ORIG | typeof CTA_TUPLE_REPLY): Buffer {
  const v4 = addr.length === 4;
  return Buffer.concat([
    nfgenmsg(v4 ? AF_INET : AF_INET6),
    nest(direction, [nest(CTA_TUPLE_IP, [attr(v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, addr)])]),
    nest(CTA_FILTER, [attr(direction === CTA_TUPLE_ORIG ? CTA_FILTER_ORIG_FLAGS : CTA_FILTER_REPLY_FLAGS, u32(FILTER_IP_SRC))]),
  ]);
}

/** The IPCTNL_MSG_CT_DELETE body for one entry. Pure. */
export function deleteBody(flow: Flow): Buffer {
  const parts = [nfgenmsg(flow.family), nest(CTA_TUPLE_ORIG, [flow.orig])];
  if (flow.zone) parts.push(attr(CTA_ZONE, flow.zone));
  return Buffer.concat(parts);
}

const ctnetlink = new NetlinkChannel(() => createNetlink(NETLINK_NETFILTER));

/** Above this many entries in the namespace's table per address, the kernel filters the dumps. */
export const FILTER_ABOVE = 2000;
const COUNT_FILE = '/proc/sys/net/netfilter/nf_conntrack_count';

/** Entries in this namespace's table; Infinity when it cannot be read (filtered dumps then). */
async function trackedCount(): Promise<number> {
  try {
    return Number((await readFile(COUNT_FILE, 'utf8')).trim());
  } catch {
    return Infinity;
  }
}

/**
 * Whether to ask for two kernel-filtered dumps per address rather than one dump of everything.
 * Each dump walks the whole hash (~15 ms) and each entry sent costs ~10 us here: two filtered
 * walks (~35 ms) pay off from ~2,000 entries for one address, and from twice that for two (a
 * cleanup shared by endpoints that went together names all their addresses).
 */
export function filteredDumps(entries: number, addresses: number, filterAbove = FILTER_ABOVE): boolean {
  return entries > filterAbove * addresses;
}

/** Closes the socket (tests and the driver's stop); the next call opens a new one. */
export function closeConntrack(): void {
  ctnetlink.close();
}

/**
 * Deletes every conntrack entry of this namespace that has one of `addresses` as source or
 * destination, in its original or reply direction; returns how many went. Entries that vanish
 * meanwhile (timed out) are fine.
 */
export async function forgetFlows(addresses: string[], filterAbove = FILTER_ABOVE): Promise<number> {
  const wanted = addresses.filter((a) => ipaddr.isValid(a)).map((a) => ipToBuffer(a).bytes);
  if (wanted.length === 0) return 0;
  const count = await trackedCount();
  if (count === 0) return 0;
  const dumps =
    filteredDumps(count, wanted.length, filterAbove) ? wanted.flatMap((addr) => [dumpBody(addr, CTA_TUPLE_ORIG), dumpBody(addr, CTA_TUPLE_REPLY)]) : [nfgenmsg(AF_UNSPEC)];
  let deleted = 0;
  for (const body of dumps) {
    for (const m of await ctnetlink.request(CT_GET, body, FlagsGet.DUMP)) {
      const flow = flowNaming(m.data, wanted);
      if (!flow) continue;
      try {
        await ctnetlink.request(CT_DELETE, deleteBody(flow));
        deleted++;
      } catch (err) {
        // Gone meanwhile: timed out, or deleted after an earlier dump named it too.
        if (!isErrno(err, 'ENOENT')) throw err;
      }
    }
  }
  return deleted;
}
