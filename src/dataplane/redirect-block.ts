// The redirect fast path (`--fast-path redirect`): one shared tc filter block per network, in
// which frames between a local container and a container on another host skip the bridge, and
// with it br_netfilter and every iptables/nftables chain of the host (dockerd's FORWARD chains,
// DOCKER-USER included), as they do on Docker's overlay, whose bridge lives in a namespace of its
// own. bench:datapath measured a bridge in a namespace of its own and this path side by side.
//
// The network's VXLAN device and every local container port (host-side veth) get a clsact qdisc
// whose ingress is the block numbered like the network's VNI. The block holds u32 filters (the
// kernels vxnet runs on here have u32 and mirred, but neither flower nor gact), in three tables:
//
//   800: (root)  indev vxv-N                                  → link 2:
//                everything else                              → link 3:
//   3: (256 buckets by the last byte of the source MAC)
//                indev vxe-X, ip src = X's, ether src = X's   → link 1:  (one per local container)
//   1: (256 buckets by the last byte of the destination MAC)
//                ether dst = a remote container's MAC         → redirect to vxv-N
//   2: (256 buckets, the same key)
//                ether dst = a local container's MAC          → redirect to vxe-X
//
// Every table but the root's two entries is hashed: a frame costs a few lookups whatever the
// number of containers (a linear list of ports was walked entry by entry for every frame).
//
// A frame that matches nothing (ARP, IPv6, broadcast, the gateway's MAC, another local
// container, a source that is not the port's own, a policed container) goes on to the bridge as
// before, where anti-spoofing, policy and isolation see it. So a missing entry only costs speed;
// only a wrong one could cost correctness, which is why the domain side (src/redirect/index.ts)
// removes entries before the change that makes them wrong and rebuilds a block it is unsure of.
//
// mirred holds its target device by reference: once that device is deleted the action drops
// everything it gets. A rebuilt VXLAN device therefore means a rebuilt block ('setup').
// The block itself goes away with the last device attached to it (the network's teardown).
//
// Entries go through `tc -force -batch -`: one process per change set, off the plugin calls'
// path except at Leave and before a policy change (removals, which must be done before they
// return).
import { vxError } from '../errors';
import { runTool } from './xtables';

export const REDIRECT_PRIO = 10;
/** u32 table ids: the root (800: is u32's own), remote MACs, local MACs, local ports. */
const ROOT_HT = 0x800;
const REMOTE_HT = 1;
const LOCAL_HT = 2;
const PORT_HT = 3;
/** u32 node ids are 12 bits; the root holds the VXLAN device's entry and the way to the ports. */
export const MAX_NODE = 0xfff;
const VXLAN_NODE = 1;
const PORTS_NODE = 2;
/** The 32-bit word at -12 from the IP header holds the destination MAC's last four bytes. */
const HASH_DST = ['hashkey', 'mask', '0x000000ff', 'at', '-12'];
/** The word at -4 holds the source MAC's last two bytes and the EtherType: the mask keeps the last byte. */
const HASH_SRC = ['hashkey', 'mask', '0x00ff0000', 'at', '-4'];

/** A local container's root entry: its port, its MAC and IPv4 address (the only source it may use here). */
export interface PortEntry {
  port: string;
  mac: string;
  ip: string;
  node: number;
}

/** An entry of a hashed table: frames to `mac` go to `dev`. */
export interface MacEntry {
  mac: string;
  dev: string;
  node: number;
}

export type RedirectOp =
  /** The block emptied and rebuilt around `vxv`: its qdisc, both hashed tables and its root entry. */
  | { op: 'setup'; block: number; vxv: string }
  /** A port's qdisc (re)attached to the block. */
  | { op: 'attach'; block: number; dev: string }
  | { op: 'add-port' | 'del-port'; block: number; entry: PortEntry }
  | { op: 'add-local' | 'del-local' | 'add-remote' | 'del-remote'; block: number; entry: MacEntry }
  /** Every filter of the block removed (fast path off for the network; errors ignored). */
  | { op: 'flush'; block: number }
  /** A device's clsact qdisc deleted, and with the last one its block (errors ignored). */
  | { op: 'detach'; dev: string };

/** One tc batch line, and whether its failure is expected and harmless ("not there"). */
export interface TcLine {
  args: string[];
  ignorable: boolean;
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IP_RE = /^\d{1,3}(\.\d{1,3}){3}$/;
const DEV_RE = /^[A-Za-z0-9_.-]{1,15}$/;

function checkedMac(mac: string): string {
  const m = mac.toLowerCase();
  if (!MAC_RE.test(m)) throw new Error(`refusing redirect entry: bad MAC ${JSON.stringify(mac)}`);
  return m;
}

function checkedDev(dev: string): string {
  if (!DEV_RE.test(dev)) throw new Error(`refusing redirect entry: bad device name ${JSON.stringify(dev)}`);
  return dev;
}

function checkedNode(node: number): string {
  if (!Number.isInteger(node) || node < 1 || node > MAX_NODE) throw new Error(`refusing redirect entry: bad node ${node}`);
  return node.toString(16);
}

/** Pure: the bucket of a MAC in the hashed tables (its last byte, as the hash key reads it). */
export function bucketOf(mac: string): number {
  return parseInt(checkedMac(mac).slice(-2), 16);
}

function filter(verb: 'add' | 'del', block: number, handle: string): string[] {
  return ['filter', verb, 'block', String(block), 'prio', String(REDIRECT_PRIO), 'handle', handle, 'protocol', 'ip', 'u32'];
}

/** "3:c8:2" → "3:c8:", the bucket an entry goes in. */
function bucketPath(handle: string): string {
  return `${handle.split(':').slice(0, 2).join(':')}:`;
}

/** An entry of a table hashed by a MAC's last byte (the destination's, or for ports the source's). */
function macHandle(ht: number, e: { mac: string; node: number }): string {
  return `${ht.toString(16)}:${bucketOf(e.mac).toString(16)}:${checkedNode(e.node)}`;
}

/** Pure: the tc batch lines of one operation, in order. */
export function opLines(o: RedirectOp): TcLine[] {
  const b = 'block' in o ? String(o.block) : '';
  const strict = (args: string[]): TcLine => ({ args, ignorable: false });
  const loose = (args: string[]): TcLine => ({ args, ignorable: true });
  switch (o.op) {
    case 'flush':
      return [loose(['filter', 'del', 'block', b])];
    case 'setup':
      return [
        loose(['filter', 'del', 'block', b]),
        loose(['qdisc', 'del', 'dev', checkedDev(o.vxv), 'clsact']),
        strict(['qdisc', 'add', 'dev', o.vxv, 'ingress_block', b, 'clsact']),
        strict([...filter('add', o.block, `${REMOTE_HT}:`), 'divisor', '256']),
        strict([...filter('add', o.block, `${LOCAL_HT}:`), 'divisor', '256']),
        strict([...filter('add', o.block, `${PORT_HT}:`), 'divisor', '256']),
        strict([...filter('add', o.block, `${ROOT_HT.toString(16)}::${VXLAN_NODE}`), 'match', 'u32', '0', '0', 'indev', o.vxv, ...HASH_DST, 'link', `${LOCAL_HT}:`]),
        strict([...filter('add', o.block, `${ROOT_HT.toString(16)}::${PORTS_NODE}`), 'match', 'u32', '0', '0', ...HASH_SRC, 'link', `${PORT_HT}:`]),
      ];
    case 'attach':
      return [loose(['qdisc', 'del', 'dev', checkedDev(o.dev), 'clsact']), strict(['qdisc', 'add', 'dev', o.dev, 'ingress_block', b, 'clsact'])];
    case 'detach':
      return [loose(['qdisc', 'del', 'dev', checkedDev(o.dev), 'clsact'])];
    case 'add-port': {
      const e = o.entry;
      if (!IP_RE.test(e.ip)) throw new Error(`refusing redirect entry: bad IPv4 address ${JSON.stringify(e.ip)}`);
      const handle = macHandle(PORT_HT, e);
      return [
        strict([
          ...filter('add', o.block, handle), 'ht', bucketPath(handle),
          'match', 'ip', 'src', `${e.ip}/32`, 'match', 'ether', 'src', checkedMac(e.mac), 'indev', checkedDev(e.port), ...HASH_DST, 'link', `${REMOTE_HT}:`,
        ]),
      ];
    }
    case 'del-port':
      return [strict(filter('del', o.block, macHandle(PORT_HT, o.entry)))];
    case 'add-local':
    case 'add-remote': {
      const ht = o.op === 'add-local' ? LOCAL_HT : REMOTE_HT;
      const handle = macHandle(ht, o.entry);
      return [strict([...filter('add', o.block, handle), 'ht', bucketPath(handle), 'match', 'ether', 'dst', checkedMac(o.entry.mac), 'action', 'mirred', 'egress', 'redirect', 'dev', checkedDev(o.entry.dev)])];
    }
    case 'del-local':
      return [strict(filter('del', o.block, macHandle(LOCAL_HT, o.entry)))];
    case 'del-remote':
      return [strict(filter('del', o.block, macHandle(REMOTE_HT, o.entry)))];
  }
}

/**
 * Pure: one tc script for a change set. Lines that may fail harmlessly are all removals ("not
 * there"), so they go first, in their order: taking something away earlier never lets a frame by
 * that the bridge would have stopped. The rest keep their order.
 */
export function script(ops: RedirectOp[]): TcLine[] {
  const lines = ops.flatMap(opLines);
  return [...lines.filter((l) => l.ignorable), ...lines.filter((l) => !l.ignorable)];
}

/** Pure: the 1-based lines tc's `-force` batch reported as failed ("Command failed -:N"). */
export function failedLines(stderr: string): number[] {
  return [...stderr.matchAll(/^Command failed -:(\d+)$/gm)].map((m) => Number(m[1]));
}

/**
 * Applies the operations in order, in one tc process (a process costs ~10 ms of CPU, more with
 * thousands of links: tc resolves device names against them). `-force` runs every line; a failed
 * line that may fail harmlessly is ignored, any other rejects, naming tc's complaint. The caller
 * empties a block whose change set was refused: lines after the failed one did run.
 */
export async function applyRedirects(ops: RedirectOp[]): Promise<void> {
  const lines = script(ops);
  if (lines.length === 0) return;
  const r = await runTool('tc', ['-force', '-batch', '-'], lines.map((l) => `${l.args.join(' ')}\n`).join(''));
  if (r.code === 0) return;
  const failed = failedLines(r.stderr);
  if (failed.length > 0 && failed.every((n) => lines[n - 1]?.ignorable === true)) return;
  const complaint = r.stderr.split('\n').filter((l) => l !== '' && !/^Command failed -:\d+$/.test(l));
  throw vxError('VXNET_ERR_KERNEL', `could not program the redirect fast path: ${complaint.slice(0, 3).join('; ') || `tc exit ${r.code}`}`);
}

/** Pure: vxnet's devices (ports, VXLAN devices) with a clsact qdisc on a shared block, from `tc qdisc show`. */
export function parseAttached(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/^qdisc clsact \S+ dev (vx[ev]-\S+) .*\bingress_block \d+/gm)) out.push(m[1]);
  return out;
}

/**
 * Every starting driver takes away the blocks an earlier run left: without the redirect, entries
 * kept in the kernel across a restart would go on letting frames past policy changes it makes;
 * with it, the run builds its blocks from empty. One tc process when there is none. Returns the
 * devices it detached.
 */
export async function detachRedirects(): Promise<string[]> {
  const r = await runTool('tc', ['qdisc', 'show']);
  const devs = r.code === 0 ? parseAttached(r.stdout) : [];
  if (devs.length > 0) await applyRedirects(devs.map((dev) => ({ op: 'detach' as const, dev })));
  return devs;
}
