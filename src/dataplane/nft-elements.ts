// Set elements of vxnet's nftables tables, written over netlink (nf_tables) instead of by
// running `nft`.
//
// Why: a process start costs ~30 ms on the hosts measured here, and `nft` then reads the
// ruleset before it writes; an `nft -f -` from node took ~60 ms, once in Join and once in
// DeleteEndpoint for every container. The tables themselves (chains, set declarations) are
// still written by `nft` at start and on reconcile, where readability beats speed; only the
// per-endpoint elements of plain sets, and of the policy's IPv4 interval sets (a concatenation's
// element is sent as its first and last key, as nft does for pipapo sets), come through here.
//
// Wire format (include/uapi/linux/netfilter/nf_tables.h, nfnetlink.h): nf_tables accepts
// changes only inside a batch, BATCH_BEGIN … BATCH_END, and only when the three messages arrive
// in one datagram. Each element is NFTA_LIST_ELEM { NFTA_SET_ELEM_KEY { NFTA_DATA_VALUE key } };
// the key of a concatenation is its fields one after the other, each padded to a multiple of 4
// bytes (nft's 32-bit registers): ifname 16 bytes (IFNAMSIZ, NUL padded), ether_addr 6+2,
// ipv4_addr 4, ipv6_addr 16, inet_proto 1 (+3), inet_service 2 in network order (+2), a raw
// payload field its own length rounded up.
//
// Removal uses NFT_MSG_DESTROYSETELEM (Linux 6.3+): no error for an element that is not there,
// so one batch can remove a port's entries whatever part of them a crash left behind.
import { RawNetlinkSocket } from 'netlink';
import { getSystemErrorName } from 'node:util';
import * as ipaddr from 'ipaddr.js';
import { vxError } from '../errors';
import { macToBuffer } from './nlmsg';

const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_NFTABLES = 10;
const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;
const NFT_MSG_NEWSETELEM = 12;
const NFT_MSG_DESTROYSETELEM = 30;
const NLMSG_ERROR = 2;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_CREATE = 0x400;
const NLA_F_NESTED = 0x8000;
export const NFTA_SET_ELEM_LIST_TABLE = 1;
export const NFTA_SET_ELEM_LIST_SET = 2;
export const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
export const NFTA_LIST_ELEM = 1;
export const NFTA_SET_ELEM_KEY = 1;
export const NFTA_SET_ELEM_KEY_END = 10;
export const NFTA_DATA_VALUE = 1;
const IFNAMSIZ = 16;

/** nfproto numbers of the table families vxnet uses. */
export const NFPROTO = { inet: 1, bridge: 7 } as const;
export type NftFamily = keyof typeof NFPROTO;

/** One field of a concatenated key, in nft's type names. */
export type KeyField =
  | { type: 'ifname'; value: string }
  | { type: 'ether_addr'; value: string }
  | { type: 'ipv4_addr'; value: string }
  | { type: 'ipv6_addr'; value: string }
  | { type: 'raw'; value: Buffer }
  /** inet_proto: one byte, in a 32-bit register */
  | { type: 'inet_proto'; value: number }
  /** inet_service: a port, two bytes in network order, in a 32-bit register */
  | { type: 'inet_service'; value: number };

function pad4(b: Buffer): Buffer {
  const len = Math.ceil(b.length / 4) * 4;
  return len === b.length ? b : Buffer.concat([b, Buffer.alloc(len - b.length)]);
}

function fieldBytes(f: KeyField): Buffer {
  switch (f.type) {
    case 'ifname': {
      const b = Buffer.alloc(IFNAMSIZ);
      if (Buffer.byteLength(f.value) >= IFNAMSIZ) throw new Error(`interface name too long: ${f.value}`);
      b.write(f.value, 'utf8');
      return b;
    }
    case 'ether_addr':
      return pad4(macToBuffer(f.value));
    case 'ipv4_addr':
    case 'ipv6_addr': {
      const a = ipaddr.parse(f.value);
      if ((a.kind() === 'ipv4') !== (f.type === 'ipv4_addr')) throw new Error(`not an ${f.type}: ${f.value}`);
      return Buffer.from(a.toByteArray());
    }
    case 'raw':
      return pad4(f.value);
    case 'inet_proto': {
      const b = Buffer.alloc(4);
      b.writeUInt8(f.value, 0);
      return b;
    }
    case 'inet_service': {
      const b = Buffer.alloc(4);
      b.writeUInt16BE(f.value, 0);
      return b;
    }
  }
}

/** The key's bytes as the kernel stores them. Pure. */
export function keyBytes(fields: KeyField[]): Buffer {
  return Buffer.concat(fields.map(fieldBytes));
}

function nlattr(type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt16LE(4 + payload.length, 0);
  h.writeUInt16LE(type, 2);
  return pad4(Buffer.concat([h, payload]));
}

function nest(type: number, parts: Buffer[]): Buffer {
  return nlattr(type | NLA_F_NESTED, Buffer.concat(parts));
}

function cstr(s: string): Buffer {
  return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.alloc(1)]);
}

function nlmsg(type: number, flags: number, seq: number, family: number, resId: number, attrs: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt32LE(20 + attrs.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(flags, 6);
  h.writeUInt32LE(seq, 8);
  h.writeUInt32LE(0, 12);
  // struct nfgenmsg: family, version (NFNETLINK_V0), res_id in network byte order.
  h.writeUInt8(family, 16);
  h.writeUInt8(0, 17);
  h.writeUInt16BE(resId, 18);
  return Buffer.concat([h, attrs]);
}

export interface ElementBatch {
  /** Per batch in changeSets; changeElements sets it for all. */
  op?: 'add' | 'destroy';
  family: NftFamily;
  table: string;
  set: string;
  keys: Buffer[];
  /**
   * Interval sets of concatenations (nft's pipapo): each element's last key, one per key (an
   * element is the box from keys[i] to keyEnds[i]). Absent for sets of single values.
   */
  keyEnds?: Buffer[];
}

/**
 * The datagram for one change of several sets (BATCH_BEGIN, one message per set, BATCH_END);
 * every set message asks for an ACK under its own sequence number. Messages apply in order. Pure.
 */
export function batchDatagram(batches: ElementBatch[], firstSeq: number): { datagram: Buffer; seqs: number[] } {
  const seqs: number[] = [];
  const msgs = batches.map((b, i) => {
    const op = b.op ?? 'add';
    const type = (NFNL_SUBSYS_NFTABLES << 8) | (op === 'add' ? NFT_MSG_NEWSETELEM : NFT_MSG_DESTROYSETELEM);
    const flags = NLM_F_REQUEST | NLM_F_ACK | (op === 'add' ? NLM_F_CREATE : 0);
    seqs.push(firstSeq + 1 + i);
    const elements = b.keys.map((k, j) => {
      const end = b.keyEnds?.[j];
      const parts = [nest(NFTA_SET_ELEM_KEY, [nlattr(NFTA_DATA_VALUE, k)])];
      if (end) parts.push(nest(NFTA_SET_ELEM_KEY_END, [nlattr(NFTA_DATA_VALUE, end)]));
      return nest(NFTA_LIST_ELEM, parts);
    });
    const attrs = Buffer.concat([nlattr(NFTA_SET_ELEM_LIST_TABLE, cstr(b.table)), nlattr(NFTA_SET_ELEM_LIST_SET, cstr(b.set)), nest(NFTA_SET_ELEM_LIST_ELEMENTS, elements)]);
    return nlmsg(type, flags, firstSeq + 1 + i, NFPROTO[b.family], 0, attrs);
  });
  const begin = nlmsg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, firstSeq, 0, NFNL_SUBSYS_NFTABLES, Buffer.alloc(0));
  const end = nlmsg(NFNL_MSG_BATCH_END, NLM_F_REQUEST, firstSeq + batches.length + 1, 0, NFNL_SUBSYS_NFTABLES, Buffer.alloc(0));
  return { datagram: Buffer.concat([begin, ...msgs, end]), seqs };
}

/** How long the kernel may take to answer a batch before the call fails. */
const ANSWER_TIMEOUT_MS = 5000;

let socket: RawNetlinkSocket | null = null;
let nextSeq = 1;
const waiting = new Map<number, (errno: number) => void>();

function onMessage(buf: Buffer): void {
  // One datagram may hold several answers (an ACK or an error per set message).
  let off = 0;
  while (off + 16 <= buf.length) {
    const len = buf.readUInt32LE(off);
    const type = buf.readUInt16LE(off + 4);
    const seq = buf.readUInt32LE(off + 8);
    if (len < 16) break;
    if (type === NLMSG_ERROR && len >= 20) {
      const errno = -buf.readInt32LE(off + 16);
      const done = waiting.get(seq);
      waiting.delete(seq);
      done?.(errno);
    }
    off += Math.ceil(len / 4) * 4;
  }
}

function getSocket(): RawNetlinkSocket {
  if (socket) return socket;
  const s = new RawNetlinkSocket(NETLINK_NETFILTER, { recvBufferSize: 1 << 20, sendBufferSize: 1 << 20 });
  s.on('message', onMessage);
  s.on('error', () => undefined);
  socket = s;
  return s;
}

/** Closes the socket (stop, tests); the next call opens a new one. */
export function closeNftElements(): void {
  socket?.close();
  socket = null;
  for (const done of waiting.values()) done(-1);
  waiting.clear();
}

function errnoName(errno: number): string {
  if (errno < 0) return 'socket closed';
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `errno ${errno}`;
  }
}

/**
 * Adds (create-if-absent) or destroys (remove-if-present) elements of several sets in one
 * transaction: all or nothing. Rejects with VXNET_ERR_FIREWALL naming `what` and the errno
 * (ENOENT: the table or a set is missing).
 */
export function changeElements(op: 'add' | 'destroy', batches: ElementBatch[], what: string): Promise<void> {
  return changeSets(batches.map((b) => ({ ...b, op })), what);
}

/** As changeElements, each batch with its own op, in order, in one transaction. */
export async function changeSets(batches: ElementBatch[], what: string): Promise<void> {
  const nonEmpty = batches.filter((b) => b.keys.length > 0);
  if (nonEmpty.length === 0) return;
  const s = getSocket();
  const firstSeq = nextSeq;
  nextSeq += nonEmpty.length + 2;
  if (nextSeq > 0x7fffffff) nextSeq = 1;
  const { datagram, seqs } = batchDatagram(nonEmpty, firstSeq);
  const answers = seqs.map(
    (seq) =>
      new Promise<number>((resolve) => {
        const timer = setTimeout(() => {
          waiting.delete(seq);
          resolve(-2);
        }, ANSWER_TIMEOUT_MS);
        waiting.set(seq, (errno) => {
          clearTimeout(timer);
          resolve(errno);
        });
      }),
  );
  await new Promise<void>((resolve, reject) =>
    s.send(datagram, { port: 0 }, (err) => (err ? reject(vxError('VXNET_ERR_FIREWALL', `could not ${what}: ${err.message}`, err)) : resolve())),
  ).catch((err: unknown) => {
    for (const seq of seqs) waiting.get(seq)?.(-1);
    throw err;
  });
  const errnos = await Promise.all(answers);
  // A failing message aborts the whole batch; the kernel answers it with its errno (and may
  // leave the others unanswered, hence the timeout reading -2 there).
  const failed = errnos.find((e) => e > 0) ?? errnos.find((e) => e !== 0);
  if (failed !== undefined) {
    const name = failed === -2 ? 'no answer from the kernel' : errnoName(failed);
    throw vxError('VXNET_ERR_FIREWALL', `could not ${what}: ${name}`, Object.assign(new Error(name), { code: name }));
  }
}

/** The table or one of the sets a change named does not exist (someone removed it). */
export function isMissingTable(err: unknown): boolean {
  return (err as { cause?: { code?: unknown } } | null)?.cause?.code === 'ENOENT';
}
