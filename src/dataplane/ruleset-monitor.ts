// Tells when someone else changes the host's netfilter ruleset: a netlink socket subscribed to
// nf_tables' multicast group (what `nft monitor` reads), for the driver's life. iptables on
// nf_tables (iptables -V says "nf_tables") writes through the same transactions, so a rule
// inserted into DOCKER-USER is reported within milliseconds, where polling would leave a window
// of its period. A socket rather than an `nft monitor` child: a child outlives a driver killed
// with -9, and keeps its network namespace alive.
//
// Every nf_tables notification but NEWGEN carries its table's name as attribute 1
// (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE, NFTA_SET_ELEM_LIST_TABLE,
// NFTA_OBJ_TABLE, NFTA_FLOWTABLE_TABLE). vxnet's own tables (vxnet-*) change at every Join
// (policy and anti-spoofing elements): those are skipped, so a `docker run` costs no check.
import { RawNetlinkSocket } from 'netlink';

const NETLINK_NETFILTER = 12;
const NFNLGRP_NFTABLES = 7;
const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_NEWGEN = 15;
const NLMSG_HDRLEN = 16;
const NFGENMSG_LEN = 4;
const TABLE_ATTR = 1;
const NLA_TYPE_MASK = 0x3fff;

/** Pure: the tables nf_tables notifications in one datagram name, as `nfproto table` (e.g. `2 filter`). */
export function changedTables(buf: Buffer): string[] {
  const out: string[] = [];
  for (let off = 0; off + NLMSG_HDRLEN <= buf.length; ) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) break;
    const type = buf.readUInt16LE(off + 4);
    const body = off + NLMSG_HDRLEN;
    if (type >> 8 === NFNL_SUBSYS_NFTABLES && (type & 0xff) !== NFT_MSG_NEWGEN && len >= NLMSG_HDRLEN + NFGENMSG_LEN) {
      const family = buf.readUInt8(body);
      for (let a = body + NFGENMSG_LEN; a + 4 <= off + len; ) {
        const alen = buf.readUInt16LE(a);
        if (alen < 4) break;
        if ((buf.readUInt16LE(a + 2) & NLA_TYPE_MASK) === TABLE_ATTR) {
          out.push(`${family} ${buf.toString('utf8', a + 4, a + alen).replace(/\0+$/, '')}`);
          break;
        }
        a += Math.ceil(alen / 4) * 4;
      }
    }
    off += Math.ceil(len / 4) * 4;
  }
  return out;
}

/** Pure: whether a datagram reports a change outside vxnet's own tables. */
export function foreignChange(buf: Buffer): boolean {
  return changedTables(buf).some((t) => !t.split(' ')[1].startsWith('vxnet-'));
}

export interface RulesetMonitor {
  close(): void;
}

/**
 * Calls `onChange` after every change outside vxnet's tables, once at the start, and after a
 * socket error (an overflowed receive buffer loses notifications: what changed is unknown).
 * Throws when the socket cannot be opened or subscribed.
 */
export function monitorRuleset(onChange: () => void): RulesetMonitor {
  const socket = new RawNetlinkSocket(NETLINK_NETFILTER, { recvBufferSize: 4 << 20, sendBufferSize: 1 << 16 });
  try {
    socket.addMembership(NFNLGRP_NFTABLES);
  } catch (err) {
    socket.close();
    throw err;
  }
  socket.on('message', (msg) => {
    if (foreignChange(msg)) onChange();
  });
  socket.on('error', () => onChange());
  setImmediate(onChange);
  return { close: () => socket.close() };
}
