// Prints each committed change of one nftables set whose key starts with two IPv4 fields (vxnet's
// allow_in / allow_out: DST . SRC-RANGE . …), one JSON line per element, as the kernel announces
// it on nf_tables' netlink multicast group. Run inside the network namespace to watch:
//
//   node dist/bench/lib/nft-set-events.js TABLE SET
//   → {"t":<epoch ms at receipt>,"op":"add"|"delete","dst":"10.0.0.5","lo":"10.0.0.7","hi":"10.0.0.7"}
//
// Why not `nft monitor`: nft 1.0.6 segfaults in `nft monitor` on this kernel (6.18), and polling
// `nft list set` costs a process start and a ruleset read per sample (~30–60 ms here). A
// subscription costs nothing between changes and reports each within a fraction of a millisecond.
// Wire format: include/uapi/linux/netfilter/nf_tables.h (see src/dataplane/nft-elements.ts).
import { RawNetlinkSocket } from 'netlink';
import { NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS, NFTA_LIST_ELEM, NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_KEY_END, NFTA_DATA_VALUE } from '../../src/dataplane/nft-elements';

const NETLINK_NETFILTER = 12;
const NFNLGRP_NFTABLES = 7;
const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_NEWSETELEM = 12;
const NFT_MSG_DELSETELEM = 14;
const NLA_TYPE_MASK = 0x3fff;

/** The attributes of one nlattr stream, by type (the last one of a type wins; lists use `all`). */
export function attrs(buf: Buffer): Array<{ type: number; value: Buffer }> {
  const out: Array<{ type: number; value: Buffer }> = [];
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > buf.length) break;
    out.push({ type: buf.readUInt16LE(off + 2) & NLA_TYPE_MASK, value: buf.subarray(off + 4, off + len) });
    off += Math.ceil(len / 4) * 4;
  }
  return out;
}

function one(list: Array<{ type: number; value: Buffer }>, type: number): Buffer | undefined {
  return list.find((a) => a.type === type)?.value;
}

function ipv4(b: Buffer, off: number): string {
  return [b[off], b[off + 1], b[off + 2], b[off + 3]].join('.');
}

/** The element changes in one datagram of the multicast group, for `table` / `set`. Pure. */
export function elementEvents(buf: Buffer, table: string, set: string): Array<{ op: 'add' | 'delete'; dst: string; lo: string; hi: string }> {
  const out: Array<{ op: 'add' | 'delete'; dst: string; lo: string; hi: string }> = [];
  let off = 0;
  while (off + 20 <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < 16 || off + len > buf.length) break;
    const type = buf.readUInt16LE(off + 4);
    const msg = type & 0xff;
    if (type >> 8 === NFNL_SUBSYS_NFTABLES && (msg === NFT_MSG_NEWSETELEM || msg === NFT_MSG_DELSETELEM)) {
      const top = attrs(buf.subarray(off + 20, off + len));
      const name = (b: Buffer | undefined): string => (b ? b.toString('utf8').replace(/\0.*$/s, '') : '');
      const list = one(top, NFTA_SET_ELEM_LIST_ELEMENTS);
      if (name(one(top, NFTA_SET_ELEM_LIST_TABLE)) === table && name(one(top, NFTA_SET_ELEM_LIST_SET)) === set && list) {
        for (const el of attrs(list).filter((a) => a.type === NFTA_LIST_ELEM)) {
          const fields = attrs(el.value);
          const key = one(attrs(one(fields, NFTA_SET_ELEM_KEY) ?? Buffer.alloc(0)), NFTA_DATA_VALUE);
          const end = one(attrs(one(fields, NFTA_SET_ELEM_KEY_END) ?? Buffer.alloc(0)), NFTA_DATA_VALUE) ?? key;
          if (!key || key.length < 8 || !end || end.length < 8) continue;
          out.push({ op: msg === NFT_MSG_NEWSETELEM ? 'add' : 'delete', dst: ipv4(key, 0), lo: ipv4(key, 4), hi: ipv4(end, 4) });
        }
      }
    }
    off += Math.ceil(len / 4) * 4;
  }
  return out;
}

if (require.main === module) {
  const [table, set] = process.argv.slice(2);
  if (!table || !set) {
    process.stderr.write('usage: nft-set-events.js TABLE SET\n');
    process.exit(2);
  }
  const s = new RawNetlinkSocket(NETLINK_NETFILTER, { recvBufferSize: 4 << 20, sendBufferSize: 1 << 16 });
  s.addMembership(NFNLGRP_NFTABLES);
  s.on('message', (buf: Buffer) => {
    const t = performance.timeOrigin + performance.now();
    for (const ev of elementEvents(buf, table, set)) process.stdout.write(`${JSON.stringify({ t, ...ev })}\n`);
  });
  // A lost notification (ENOBUFS) would make the watcher's view wrong: say so, it counts as a failure.
  s.on('error', (err) => process.stdout.write(`${JSON.stringify({ t: performance.timeOrigin + performance.now(), error: err.message })}\n`));
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  process.on('SIGTERM', () => {
    s.close();
    process.exit(0);
  });
}
