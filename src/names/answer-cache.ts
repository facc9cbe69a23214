// vxnet's answers kept encoded, so that answering a network's name costs a map lookup and a few
// byte copies instead of a dns-packet decode, a table scan and an encode.
//
// Why: a name across hosts is answered by vxnet's front listener where Docker answers a local
// name in-process; every microsecond vxnet spends per query adds to the ratio the README gives
// (issue 10). Measured with the driver's JIT still cold (the first hundred queries of a
// process), decode + lookup + encode took ~40 µs a query, ~8 µs warm.
//
// One entry per (network, name as asked in lower case, query type, EDNS or not): the complete
// reply encoded once by dns-packet (answer.ts: answerPacket) with the lower-case name. A query
// gets a copy with its own id, its RD/CD bits, and its own question section: the bytes of the
// name as the client sent them (case kept: resolvers using DNS 0x20 compare it) go into the
// question and the owner name of every answer record (same length whatever the case). A name
// with several addresses gets its records copied in rotated order (the same round robin as
// NameTable.lookup: one turn counter for both).
//
// Only the plain shape is served from here (a standard query, one IN question of printable
// ASCII labels, no compression, nothing after it but at most one OPT record); anything else,
// a reply that would not fit the client's UDP size (truncation) and every name vxnet does not
// answer go through answer.ts's `decide` as before.
//
// Stale answers: every change of the NameTable (a name removed, an address changed, an
// endpoint gone) bumps its version, and the first query after that finds the cache emptied.
// The cache holds at most MAX_ENTRIES entries (a flood of random names empties it, never grows
// it).
import * as dnsPacket from 'dns-packet';
import { answerPacket, decide, Decision, PLAIN_UDP_MAX } from './answer';
import type { Family, NameTable, Scope } from './table';

const HEADER_BYTES = 12;
const MAX_NAME_BYTES = 255;
const MAX_LABEL = 63;
const TYPE_A = 1;
const TYPE_AAAA = 28;
const TYPE_OPT = 41;
const CLASS_IN = 1;
/** Type, class, TTL, data length: the fixed part of a resource record after its name. */
const RR_FIXED_BYTES = 10;
/** Byte 2 of the header: QR, opcode, AA, TC must be 0 in a plain query (RD may be set). */
const BYTE2_RD = 0x01;
/** Byte 3: CD, echoed like RD (answer.ts ECHOED_FLAGS). */
const BYTE3_CD = 0x10;
export const MAX_ENTRIES = 4096;

/** What the fast path needs of a query; null when the query is not of the plain shape. */
export interface PlainQuery {
  /** Offset just after the name's terminating zero byte. */
  nameEnd: number;
  qtype: number;
  edns: boolean;
  /** The UDP size the client accepts (its OPT's, else 512). */
  udpSize: number;
}

function labelByteOk(b: number): boolean {
  // Printable ASCII but '.' and '\': the dotted form is then exactly the wire form, and
  // lower-casing is DNS's ASCII-only case folding.
  return b > 0x20 && b < 0x7f && b !== 0x2e && b !== 0x5c;
}

/** The plain shape of a query, or null (pure: bytes in, offsets out). */
export function parsePlainQuery(msg: Buffer): PlainQuery | null {
  if (msg.length < HEADER_BYTES + 5) return null;
  if ((msg[2] & ~BYTE2_RD) !== 0) return null;
  if (msg.readUInt16BE(4) !== 1 || msg.readUInt16BE(6) !== 0 || msg.readUInt16BE(8) !== 0) return null;
  const additionals = msg.readUInt16BE(10);
  if (additionals > 1) return null;
  let i = HEADER_BYTES;
  for (;;) {
    if (i >= msg.length) return null;
    const len = msg[i];
    if (len === 0) break;
    if (len > MAX_LABEL || i + 1 + len >= msg.length) return null;
    for (let j = i + 1; j <= i + len; j++) if (!labelByteOk(msg[j])) return null;
    i += len + 1;
    if (i - HEADER_BYTES >= MAX_NAME_BYTES) return null;
  }
  if (i === HEADER_BYTES) return null; // the root: not a container name
  const nameEnd = i + 1;
  if (nameEnd + 4 > msg.length || msg.readUInt16BE(nameEnd + 2) !== CLASS_IN) return null;
  const qtype = msg.readUInt16BE(nameEnd);
  const end = nameEnd + 4;
  if (additionals === 0) return end === msg.length ? { nameEnd, qtype, edns: false, udpSize: PLAIN_UDP_MAX } : null;
  // One OPT record: root name, type 41, class = UDP size, TTL = flags, then its data.
  if (end + 11 > msg.length || msg[end] !== 0 || msg.readUInt16BE(end + 1) !== TYPE_OPT) return null;
  if (end + 11 + msg.readUInt16BE(end + 9) !== msg.length) return null;
  return { nameEnd, qtype, edns: true, udpSize: msg.readUInt16BE(end + 3) };
}

/** The dotted name of a plain query's question, as sent. */
function dottedName(msg: Buffer, nameEnd: number): string {
  const labels: string[] = [];
  for (let i = HEADER_BYTES; msg[i] !== 0; i += msg[i] + 1) labels.push(msg.toString('latin1', i + 1, i + 1 + msg[i]));
  return labels.join('.');
}

interface Entry {
  /** The reply for the lower-case name: id 0, RD/CD clear, records in sorted order. */
  template: Buffer;
  /** Network, lower-case dotted name and family: the key of the round robin in the NameTable. */
  lnet: string;
  name: string;
  family: Family;
  count: number;
  /** Where the first answer record starts and the size of each. */
  recordsAt: number;
  recordBytes: number;
}

export class AnswerCache {
  /** null: not a name vxnet answers (or not cacheable): decide() handles it. */
  private readonly entries = new Map<string, Entry | null>();
  private seen = -1;

  constructor(private readonly table: NameTable) {}

  get size(): number {
    return this.entries.size;
  }

  /** What to do with one query from a container resolving in scope (same result as decide()). */
  decide(msg: Buffer, scope: Scope, transport: 'udp' | 'tcp'): Decision {
    const q = parsePlainQuery(msg);
    if (!q) return decide(msg, scope, this.table, transport);
    if (this.seen !== this.table.version) {
      this.entries.clear();
      this.seen = this.table.version;
    }
    const key = `${scope.key}\n${msg.toString('latin1', HEADER_BYTES, q.nameEnd).toLowerCase()}\n${q.qtype}\n${q.edns ? 1 : 0}`;
    let e = this.entries.get(key);
    if (e === undefined) {
      e = this.build(msg, q, scope);
      if (this.entries.size >= MAX_ENTRIES) this.entries.clear();
      this.entries.set(key, e);
    }
    const limit = transport === 'tcp' ? Infinity : Math.max(PLAIN_UDP_MAX, q.udpSize);
    if (e === null || e.template.length > limit) return decide(msg, scope, this.table, transport);
    return { kind: 'answer', reply: this.fill(e, msg, q), addresses: e.count };
  }

  /** The entry for a plain query, or null when decide() must handle it. */
  private build(msg: Buffer, q: PlainQuery, scope: Scope): Entry | null {
    const name = dottedName(msg, q.nameEnd).toLowerCase();
    const family: Family | null = q.qtype === TYPE_A ? 4 : q.qtype === TYPE_AAAA ? 6 : null;
    const lnet = this.table.networkKnowing(scope.lnets, name);
    if (lnet === null) return null;
    const look = this.table.sortedAddresses(lnet, name, family ?? 4);
    const addresses = family === null ? [] : look.addresses;
    // The question's type bytes are the query's own (copied in fill); A stands in for the
    // template, which only has to have the same length.
    const question: dnsPacket.Question = { name, type: family === 6 ? 'AAAA' : 'A', class: 'IN' };
    const template = dnsPacket.encode(answerPacket(0, 0, question, addresses, q.edns));
    const nameBytes = q.nameEnd - HEADER_BYTES;
    const recordBytes = nameBytes + RR_FIXED_BYTES + (family === 6 ? 16 : 4);
    const recordsAt = q.nameEnd + 4;
    const entry: Entry = { template, lnet, name, family: family ?? 4, count: addresses.length, recordsAt, recordBytes };
    return laidOutAsExpected(entry, msg, q) ? entry : null;
  }

  private fill(e: Entry, msg: Buffer, q: PlainQuery): Buffer {
    const t = e.template;
    const out = Buffer.allocUnsafe(t.length);
    t.copy(out, 0, 0, HEADER_BYTES);
    out[0] = msg[0];
    out[1] = msg[1];
    out[2] = t[2] | (msg[2] & BYTE2_RD);
    out[3] = t[3] | (msg[3] & BYTE3_CD);
    msg.copy(out, HEADER_BYTES, HEADER_BYTES, e.recordsAt);
    const first = e.count > 1 ? this.table.rotation(e.lnet, e.name, e.family, e.count) : 0;
    let at = e.recordsAt;
    for (let i = 0; i < e.count; i++) {
      const from = e.recordsAt + ((first + i) % e.count) * e.recordBytes;
      t.copy(out, at, from, from + e.recordBytes);
      msg.copy(out, at, HEADER_BYTES, q.nameEnd);
      at += e.recordBytes;
    }
    t.copy(out, at, at);
    return out;
  }
}

/**
 * Whether dns-packet laid the template out as fill() assumes (name uncompressed at the question
 * and at the start of every record, records of equal size, OPT last): checked once per entry,
 * so a codec update that compresses names costs speed, never a wrong answer.
 */
function laidOutAsExpected(e: Entry, msg: Buffer, q: PlainQuery): boolean {
  const lower = Buffer.from(msg.toString('latin1', HEADER_BYTES, q.nameEnd).toLowerCase(), 'latin1');
  const optBytes = q.edns ? 11 : 0;
  if (e.template.length !== e.recordsAt + e.count * e.recordBytes + optBytes) return false;
  const starts = [HEADER_BYTES, ...Array.from({ length: e.count }, (_, i) => e.recordsAt + i * e.recordBytes)];
  return starts.every((s) => e.template.subarray(s, s + lower.length).equals(lower));
}
