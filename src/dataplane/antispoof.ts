// Anti-spoofing on the bridge ports of containers: the nftables table `bridge vxnet-antispoof`.
//
// A container with NET_RAW or NET_ADMIN can send frames with any source MAC and IP; on a plain
// bridge that lets it take over another container's address and poison its peers' ARP caches
// and the bridge's forwarding table. Every frame that enters a bridge from a container's host-side
// veth (`vxe-*`) is checked at the bridge family's prerouting hook, before the bridge learns its
// source MAC and before br_netfilter hands it to iptables:
//
//   chain prerouting (filter hook, priority filter)
//     iifname "vxe-*" jump port                     only container ports: the VXLAN port and the
//                                                   bridge itself are not checked here, because
//                                                   each host checks its own ports (holds across hosts)
//   chain port
//     IPv4:  iifname . ether saddr . ip saddr                         in @v4   accept
//     ARP:   iifname . ether saddr . arp saddr ether . arp saddr ip   in @arp4 accept
//     ND NA: iifname . ether saddr . target  not in @nd6 → drop       (no IPv6 cache poisoning)
//     ND NS / MLD report from :: (DAD) whose target is the port's own address: accept
//     IPv6:  iifname . ether saddr . ip6 saddr                        in @v6   accept
//     everything else: counter "dropped", drop
//
// One set lookup per packet whatever the number of containers: the cost is constant. A port with
// no elements drops everything (fail closed), so Join writes a port's elements before its veth
// exists and Leave removes them. The sets are not flushed when the table is ensured: the kernel
// keeps enforcing while the driver is away (kill -9), and reconcile re-syncs the elements with the
// store at the next start.
//
// The table is written by `nft -f -` (at start and on reconcile). A port's elements, written in
// every Join and DeleteEndpoint, go over netlink instead (nft-elements.ts: an `nft` process cost
// ~60 ms per call): one transaction per port, removal with DESTROYSETELEM (idempotent).
// nftables 1.0.6 has no `icmpv6 taddr`: the ND target is read as raw payload (@th,64,128, an
// integer: nd6 elements print as 0x-hex, and are the address's 16 bytes on the wire).
import * as ipaddr from 'ipaddr.js';
import { exclusive, mustRun, runTool } from './xtables';
import { changeElements, isMissingTable, keyBytes, KeyField } from './nft-elements';

export const ANTISPOOF_FAMILY = 'bridge' as const;
export const ANTISPOOF_TABLE = 'vxnet-antispoof';
export const DROPPED_COUNTER = 'dropped';
/** Host-side veth names of containers (network/names.ts VETH_HOST_PREFIX): the guarded ports. */
const GUARDED_PORTS = 'vxe-*';
const T = `${ANTISPOOF_FAMILY} ${ANTISPOOF_TABLE}`;

export type SpoofSet = 'v4' | 'arp4' | 'v6' | 'nd6';
export const SPOOF_SETS: readonly SpoofSet[] = ['v4', 'arp4', 'v6', 'nd6'];

/** One allowed (port, MAC, address) triple in one of the sets. `ip` is in canonical text form. */
export interface SpoofElement {
  set: SpoofSet;
  port: string;
  mac: string;
  ip: string;
}

const SET_DECLS: Record<SpoofSet, string> = {
  v4: 'type ifname . ether_addr . ipv4_addr;',
  arp4: 'type ifname . ether_addr . ether_addr . ipv4_addr;',
  v6: 'type ifname . ether_addr . ipv6_addr;',
  nd6: 'typeof iifname . ether saddr . @th,64,128;',
};

/** The rules exactly as `nft list chain` prints them, so a changed chain can be told apart. */
export function chainRules(): Record<'prerouting' | 'port', string[]> {
  const drop = `counter name "${DROPPED_COUNTER}" drop`;
  return {
    prerouting: [`iifname "${GUARDED_PORTS}" jump port`],
    port: [
      'iifname . ether saddr . ip saddr @v4 accept',
      'arp htype 1 arp ptype ip arp hlen 6 arp plen 4 iifname . ether saddr . arp saddr ether . arp saddr ip @arp4 accept',
      `icmpv6 type nd-neighbor-advert iifname . ether saddr . @th,64,128 != @nd6 ${drop}`,
      'ip6 saddr :: icmpv6 type nd-neighbor-solicit iifname . ether saddr . @th,64,128 @nd6 accept',
      'ip6 saddr :: icmpv6 type { mld-listener-report, mld2-listener-report } accept',
      'iifname . ether saddr . ip6 saddr @v6 accept',
      drop,
    ],
  };
}

/** Pure: the script that creates what is missing and rewrites both chains (sets keep their elements). */
export function tableScript(): string {
  const rules = chainRules();
  return [
    `add table ${T}`,
    ...SPOOF_SETS.map((s) => `add set ${T} ${s} { ${SET_DECLS[s]} }`),
    `add counter ${T} ${DROPPED_COUNTER}`,
    `add chain ${T} prerouting { type filter hook prerouting priority filter; policy accept; }`,
    `add chain ${T} port`,
    `flush chain ${T} prerouting`,
    `flush chain ${T} port`,
    ...rules.prerouting.map((r) => `add rule ${T} prerouting ${r}`),
    ...rules.port.map((r) => `add rule ${T} port ${r}`),
    '',
  ].join('\n');
}

/** Pure: an element as nft writes it in `{ … }`. */
export function elementText(e: SpoofElement): string {
  const port = JSON.stringify(e.port);
  switch (e.set) {
    case 'v4':
    case 'v6':
      return `${port} . ${e.mac} . ${e.ip}`;
    case 'arp4':
      return `${port} . ${e.mac} . ${e.mac} . ${e.ip}`;
    case 'nd6':
      return `${port} . ${e.mac} . ${ipv6Hex(e.ip)}`;
  }
}

/** Pure: the fields of an element's key, in its set's order. */
export function elementKey(e: SpoofElement): KeyField[] {
  const port: KeyField = { type: 'ifname', value: e.port };
  const mac: KeyField = { type: 'ether_addr', value: e.mac };
  switch (e.set) {
    case 'v4':
      return [port, mac, { type: 'ipv4_addr', value: e.ip }];
    case 'arp4':
      return [port, mac, mac, { type: 'ipv4_addr', value: e.ip }];
    case 'v6':
      return [port, mac, { type: 'ipv6_addr', value: e.ip }];
    case 'nd6':
      return [port, mac, { type: 'raw', value: Buffer.from(ipaddr.IPv6.parse(e.ip).toByteArray()) }];
  }
}

function changeSpoofElements(op: 'add' | 'destroy', elements: SpoofElement[], what: string): Promise<void> {
  const batches = SPOOF_SETS.map((set) => ({
    family: ANTISPOOF_FAMILY,
    table: ANTISPOOF_TABLE,
    set,
    keys: elements.filter((e) => e.set === set).map((e) => keyBytes(elementKey(e))),
  }));
  return changeElements(op, batches, what);
}

function ipv6Hex(ip: string): string {
  return `0x${Buffer.from(ipaddr.IPv6.parse(ip).toByteArray()).toString('hex')}`;
}

function hexIpv6(hex: string): string {
  const digits = hex.replace(/^0x/, '').padStart(32, '0');
  return ipaddr.fromByteArray([...Buffer.from(digits, 'hex')]).toString();
}

/** The parts of `nft -j` output vxnet reads. */
interface NftJsonItem {
  set?: { name: string; elem?: NftJsonElem[] };
  counter?: { name: string; packets: number };
}

/** A plain element is {concat: [...]}; one with a counter or timeout is {elem: {val: {concat}}} (vxnet writes neither). */
type NftJsonElem = { concat?: unknown[]; elem?: { val?: { concat?: unknown[] } } };

/** Pure: the elements of `nft -j list table` output (unknown sets and shapes are skipped). */
export function parseElements(json: string): SpoofElement[] {
  const out: SpoofElement[] = [];
  const doc = JSON.parse(json) as { nftables?: NftJsonItem[] };
  for (const item of doc.nftables ?? []) {
    const set = item.set;
    if (!set || !isSpoofSet(set.name)) continue;
    for (const raw of set.elem ?? []) {
      const concat = raw.concat ?? raw.elem?.val?.concat;
      if (!Array.isArray(concat) || concat.length < 3 || concat.some((v) => typeof v !== 'string')) continue;
      const parts = concat as string[];
      const ip = parts[parts.length - 1];
      out.push({ set: set.name, port: parts[0], mac: parts[1], ip: set.name === 'nd6' ? hexIpv6(ip) : ip });
    }
  }
  return out;
}

function isSpoofSet(name: string): name is SpoofSet {
  return (SPOOF_SETS as readonly string[]).includes(name);
}

/** Pure: the chains' rules as `nft list table` prints them (tabs and braces stripped). */
export function parseChains(text: string): Map<string, string[]> {
  const chains = new Map<string, string[]>();
  let current: string[] | null = null;
  for (const line of text.split('\n')) {
    const t = line.trim();
    const m = /^chain (\S+) \{$/.exec(t);
    if (m) {
      current = [];
      chains.set(m[1], current);
      continue;
    }
    if (t === '}') {
      current = null;
      continue;
    }
    if (current && t !== '' && !t.startsWith('type ')) current.push(t);
  }
  return chains;
}

/** Resolves whether the table exists (nft exits 1 for "No such file or directory"). */
async function tableText(): Promise<string | null> {
  const r = await runTool('nft', ['list', 'table', ANTISPOOF_FAMILY, ANTISPOOF_TABLE]);
  return r.code === 0 ? r.stdout : null;
}

/**
 * The table, its sets, counter and chains; the chains rewritten when their rules differ (one
 * transaction: no moment without checks). Returns what it changed, or would (dryRun).
 */
export function ensureAntispoof(opts: { dryRun: boolean }): Promise<string[]> {
  return exclusive(async () => {
    const text = await tableText();
    const changes: string[] = [];
    if (text === null) {
      changes.push(`table ${T}: created`);
    } else {
      const have = parseChains(text);
      const want = chainRules();
      for (const chain of ['prerouting', 'port'] as const) {
        if (JSON.stringify(have.get(chain) ?? []) !== JSON.stringify(want[chain])) changes.push(`table ${T}: rewrote chain ${chain}`);
      }
      for (const set of SPOOF_SETS) if (!new RegExp(`^\\s*set ${set} \\{`, 'm').test(text)) changes.push(`table ${T}: added set ${set}`);
    }
    if (changes.length > 0 && !opts.dryRun) await mustRun('nft', ['-f', '-'], `write table ${T}`, tableScript());
    return changes;
  });
}

/** Removes the table with every element (plugin disable, uninstall). Done if it is not there. */
export function removeAntispoof(): Promise<void> {
  return exclusive(async () => {
    await mustRun('nft', ['-f', '-'], `remove table ${T}`, `add table ${T}\ndelete table ${T}\n`);
  });
}

/**
 * One transaction: all of the port's elements or none. A table removed behind vxnet's back
 * (`nft flush ruleset`, a failed start) is put back first, as Join puts back a missing bridge.
 */
export async function addSpoofElements(elements: SpoofElement[]): Promise<void> {
  const what = `add anti-spoofing entries of ${ports(elements)}`;
  try {
    await changeSpoofElements('add', elements, what);
  } catch (err) {
    if (!isMissingTable(err)) throw err;
    await ensureAntispoof({ dryRun: false });
    await changeSpoofElements('add', elements, what);
  }
}

/** Idempotent: elements that are not there are fine. */
export function removeSpoofElements(elements: SpoofElement[]): Promise<void> {
  return changeSpoofElements('destroy', elements, `remove anti-spoofing entries of ${ports(elements)}`);
}

/** Every element in the table; [] when there is no table. */
export function listSpoofElements(): Promise<SpoofElement[]> {
  return exclusive(async () => {
    const r = await runTool('nft', ['-j', 'list', 'table', ANTISPOOF_FAMILY, ANTISPOOF_TABLE]);
    return r.code === 0 ? parseElements(r.stdout) : [];
  });
}

/** Frames the table dropped since it was created; null when there is no table. */
export async function antispoofDropped(): Promise<number | null> {
  const r = await runTool('nft', ['-j', 'list', 'counter', ANTISPOOF_FAMILY, ANTISPOOF_TABLE, DROPPED_COUNTER]);
  if (r.code !== 0) return null;
  const doc = JSON.parse(r.stdout) as { nftables?: NftJsonItem[] };
  const counter = doc.nftables?.find((i) => i.counter)?.counter;
  return counter ? counter.packets : null;
}

function ports(elements: SpoofElement[]): string {
  return [...new Set(elements.map((e) => e.port))].join(', ');
}
