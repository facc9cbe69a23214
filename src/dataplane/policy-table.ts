// The kernel side of network policy: one nftables table, `inet vxnet-policy`, whose rules are a
// CONSTANT few; everything per container lives in four sets (src/policy/resolve.ts fills them):
//
//   chain forward (hook forward; bridged frames get here through br_netfilter, which dockerd
//   turns on and vxnet's isolation already relies on):
//     ct state established,related accept       replies to a container's own connections
//     ct status dnat accept                     published ports keep working
//     ip saddr @policed_out jump out_check      sources with egress rules
//     ip daddr @policed_in jump in_check        destinations with ingress rules, isolated, pending
//   chain in_check:  ip daddr . ip saddr . meta l4proto . th dport @allow_in return; counted drop
//   chain out_check: ip saddr . ip daddr . meta l4proto . th dport @allow_out return; counted drop
// The drop is counted per container: drop_in / drop_out hold the same addresses as policed_in /
// policed_out in sets with per-element counters (metrics sum them by network); drop_in6 /
// drop_out6 do the same for policed_in6 / policed_out6, so IPv6 drops count per network too.
//
// So a packet costs a few hash/pipapo lookups, whatever the number of rules and containers.
// Traffic to and from the gateway (the host) is not forwarded and is never checked here.
// The table is not tied to the driver process: after kill -9 the kernel keeps enforcing, and the
// next start replaces the sets' content in one transaction (no open window).
// Counters are named objects: rewriting the chains does not reset them (metrics read them).
//
// The fast path, `bridge vxnet-policy` (the same name in the bridge family): conntrack is skipped
// for frames that the bridge forwards from one container to another of the same network, unless
// one end is policed. vxnet's bridge lives in the host's namespace, where dockerd has turned on
// br_netfilter: without this, every such frame (also the ones from the VXLAN port) is tracked —
// a conntrack lookup, an entry per flow and its confirmation — for nothing, since the isolation
// rule accepts bridged frames statelessly and unpoliced ends need no state (measured by
// bench:datapath: this is most of what vxnet cost over a bridge in a namespace of its own).
//   chain prerouting (hook prerouting, priority -300: before br_netfilter hands the frame to the
//   IPv4/IPv6 hooks, where conntrack would take it):
//     iifname "vxe-*" meta pkttype other jump fast   from a container port or a VXLAN port, to a
//     iifname "vxv-*" meta pkttype other jump fast   MAC that is not the bridge's: the bridge forwards
//                                                     it (a frame to the gateway's MAC is "host": it
//                                                     is routed — egress, NAT, published ports —
//                                                     and stays tracked)
//   chain fast:
//     ip  saddr/daddr in none of the policed sets: notrack
//     ip6 saddr/daddr in none of the policed sets: notrack
// The policed sets are mirrors of the inet table's, written in the same transaction. A frame with
// a policed end stays tracked both ways, so the policy's "replies pass" (ct state established)
// holds; if a mirror ever lacked an address, its ingress checks (stateless) would still apply and
// only its replies would be dropped: it fails closed, never open. Hairpin NAT to a published port
// is not affected: its replies go to the gateway's MAC (ports.ts masquerades them).
import * as ipaddr from 'ipaddr.js';
import { exclusive, mustRun, runTool } from './xtables';
import { changeSets, ElementBatch, keyBytes } from './nft-elements';

export const POLICY_TABLE = 'vxnet-policy';
export const DROPS_IN = 'drops_in';
export const DROPS_OUT = 'drops_out';
/** Before br_netfilter (NF_BR_PRI_BRNF, 0) and before the anti-spoofing table (filter, -200). */
const FAST_PATH_PRIORITY = -300;
const DROP_IN = 'drop_in';
const DROP_OUT = 'drop_out';
const DROP_IN6 = 'drop_in6';
const DROP_OUT6 = 'drop_out6';
/** The counting sets, by the direction of the drops they count. */
const DROP_SETS = [[DROP_IN, 'in'], [DROP_OUT, 'out'], [DROP_IN6, 'in'], [DROP_OUT6, 'out']] as const;
/** The prefixes of the bridge ports the fast path looks at (network/names.ts: veth host ends, VXLAN devices). */
const FAST_PORTS = ['vxe-*', 'vxv-*'];
type Family = 'inet' | 'bridge';
/**
 * Sets that hold the same elements as another: drop counters per policed address (inet), and the
 * fast path's copies of the policed sets (bridge: a rule can only name a set of its own table).
 */
const MIRRORS: Partial<Record<PolicySetName, Array<{ family: Family; set: string }>>> = {
  policedIn: [{ family: 'inet', set: DROP_IN }, { family: 'bridge', set: 'policed_in' }],
  policedOut: [{ family: 'inet', set: DROP_OUT }, { family: 'bridge', set: 'policed_out' }],
  policedIn6: [{ family: 'inet', set: DROP_IN6 }, { family: 'bridge', set: 'policed_in6' }],
  policedOut6: [{ family: 'inet', set: DROP_OUT6 }, { family: 'bridge', set: 'policed_out6' }],
};
/** Every set a change of `name` writes: its own, then its mirrors. */
function targets(name: PolicySetName): Array<{ family: Family; set: string }> {
  return [{ family: 'inet', set: SETS[name] }, ...(MIRRORS[name] ?? [])];
}
const FAST_SETS = Object.values(MIRRORS).flat().filter((m) => m.family === 'bridge').map((m) => m.set);
const SETS = {
  policedIn: 'policed_in',
  policedOut: 'policed_out',
  allowIn: 'allow_in',
  allowOut: 'allow_out',
  policedIn6: 'policed_in6',
  policedOut6: 'policed_out6',
  allowIn6: 'allow6_in',
  allowOut6: 'allow6_out',
} as const;
/** A set of earlier versions (IPv6 egress to the own subnet only): dropped when the table is written. */
const RETIRED_SETS = ['allow_out6 { type ipv6_addr . ipv6_addr; flags interval; }'];
export type PolicySetName = keyof typeof SETS;
export type PolicySets = Record<PolicySetName, string[]>;

export function emptyPolicySets(): PolicySets {
  return { policedIn: [], policedOut: [], allowIn: [], allowOut: [], policedIn6: [], policedOut6: [], allowIn6: [], allowOut6: [] };
}

const ELEMENT_RE = /^[0-9a-f.:/]+(-[0-9a-f.:]+)?( \. [0-9a-f.:/]+(-[0-9a-f.:]+)?){0,3}$/;

/** How the tables are written: `fastPath` false leaves the bridge table's hook without rules (`--fast-path off`). */
export interface PolicyTableOptions {
  fastPath: boolean;
}
const DEFAULTS: PolicyTableOptions = { fastPath: true };

/** The table's structure (no elements): sets, counters and chains as one nft script. Pure. */
export function tableScript(opts: PolicyTableOptions = DEFAULTS): string {
  const t = `inet ${POLICY_TABLE}`;
  const concat = 'type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags interval;';
  const concat6 = 'type ipv6_addr . ipv6_addr . inet_proto . inet_service; flags interval;';
  return [
    // Declaring what exists is a no-op; the chains are flushed and rewritten in the same
    // transaction, so they always hold exactly these rules (and the sets keep their elements).
    `table ${t} {`,
    `  set ${SETS.policedIn} { type ipv4_addr; }`,
    `  set ${SETS.policedOut} { type ipv4_addr; }`,
    `  set ${SETS.allowIn} { ${concat} }`,
    `  set ${SETS.allowOut} { ${concat} }`,
    `  set ${SETS.policedIn6} { type ipv6_addr; }`,
    `  set ${SETS.policedOut6} { type ipv6_addr; }`,
    `  set ${SETS.allowIn6} { ${concat6} }`,
    `  set ${SETS.allowOut6} { ${concat6} }`,
    `  set ${DROP_IN} { type ipv4_addr; counter; }`,
    `  set ${DROP_OUT} { type ipv4_addr; counter; }`,
    `  set ${DROP_IN6} { type ipv6_addr; counter; }`,
    `  set ${DROP_OUT6} { type ipv6_addr; counter; }`,
    `  counter ${DROPS_IN} { }`,
    `  counter ${DROPS_OUT} { }`,
    '  chain in_check { }',
    '  chain out_check { }',
    '  chain in_check6 { }',
    '  chain out_check6 { }',
    '  chain forward { type filter hook forward priority filter; policy accept; }',
    '}',
    `flush chain ${t} in_check`,
    `flush chain ${t} out_check`,
    `flush chain ${t} in_check6`,
    `flush chain ${t} out_check6`,
    `flush chain ${t} forward`,
    // Declared (a no-op if there) then deleted: gone whether or not an earlier version made it.
    ...RETIRED_SETS.flatMap((set) => [`add set ${t} ${set}`, `delete set ${t} ${set.split(' ')[0]}`]),
    `add rule ${t} in_check ip daddr . ip saddr . meta l4proto . th dport @${SETS.allowIn} return`,
    `add rule ${t} in_check ip daddr @${DROP_IN} drop`,
    `add rule ${t} in_check counter name ${DROPS_IN} drop`,
    `add rule ${t} out_check ip saddr . ip daddr . meta l4proto . th dport @${SETS.allowOut} return`,
    `add rule ${t} out_check ip saddr @${DROP_OUT} drop`,
    `add rule ${t} out_check counter name ${DROPS_OUT} drop`,
    `add rule ${t} forward ct state established,related accept`,
    `add rule ${t} forward ct status dnat accept`,
    // Neighbour discovery is not tracked by conntrack (never "established"): a policed IPv6
    // container must still answer and send solicitations and adverts, or no peer reaches it.
    `add rule ${t} forward icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept`,
    `add rule ${t} forward ip saddr @${SETS.policedOut} jump out_check`,
    `add rule ${t} forward ip daddr @${SETS.policedIn} jump in_check`,
    // IPv6: the same checks over its own sets (IPv6 sources and CIDRs of the same rules).
    `add rule ${t} in_check6 ip6 daddr . ip6 saddr . meta l4proto . th dport @${SETS.allowIn6} return`,
    `add rule ${t} in_check6 ip6 daddr @${DROP_IN6} drop`,
    `add rule ${t} in_check6 counter name ${DROPS_IN} drop`,
    `add rule ${t} out_check6 ip6 saddr . ip6 daddr . meta l4proto . th dport @${SETS.allowOut6} return`,
    `add rule ${t} out_check6 ip6 saddr @${DROP_OUT6} drop`,
    `add rule ${t} out_check6 counter name ${DROPS_OUT} drop`,
    `add rule ${t} forward ip6 saddr @${SETS.policedOut6} jump out_check6`,
    `add rule ${t} forward ip6 daddr @${SETS.policedIn6} jump in_check6`,
    ...fastPathScript(opts.fastPath),
    '',
  ].join('\n');
}

/**
 * The bridge-family table of the fast path (see the header), declared and its chains rewritten;
 * off: the same table and sets (kept filled, so turning it on needs no other change), no rules.
 */
function fastPathScript(on: boolean): string[] {
  const b = `bridge ${POLICY_TABLE}`;
  const type = (set: string): string => (set.endsWith('6') ? 'ipv6_addr' : 'ipv4_addr');
  const none = (ip: 'ip' | 'ip6', sets: string[]): string => sets.flatMap((set) => [`${ip} saddr != @${set}`, `${ip} daddr != @${set}`]).join(' ');
  return [
    `table ${b} {`,
    ...FAST_SETS.map((set) => `  set ${set} { type ${type(set)}; }`),
    '  chain fast { }',
    `  chain prerouting { type filter hook prerouting priority ${FAST_PATH_PRIORITY}; policy accept; }`,
    '}',
    `flush chain ${b} fast`,
    `flush chain ${b} prerouting`,
    ...(on
      ? [
          ...FAST_PORTS.map((port) => `add rule ${b} prerouting iifname "${port}" meta pkttype other jump fast`),
          `add rule ${b} fast ${none('ip', FAST_SETS.filter((x) => !x.endsWith('6')))} notrack`,
          `add rule ${b} fast ${none('ip6', FAST_SETS.filter((x) => x.endsWith('6')))} notrack`,
        ]
      : []),
  ];
}

function checked(elements: string[]): string[] {
  for (const e of elements) if (!ELEMENT_RE.test(e)) throw new Error(`refusing policy set element ${JSON.stringify(e)}`);
  return elements;
}

function elementLines(verb: 'add' | 'delete', sets: Partial<PolicySets>, only: 'all' | 'mirrors' = 'all'): string[] {
  const out: string[] = [];
  for (const [name, elements] of Object.entries(sets) as Array<[PolicySetName, string[]]>) {
    if (elements.length === 0) continue;
    for (const t of only === 'mirrors' ? MIRRORS[name] ?? [] : targets(name)) {
      out.push(`${verb} element ${t.family} ${POLICY_TABLE} ${t.set} { ${checked(elements).join(', ')} }`);
    }
  }
  return out;
}

/**
 * Pure: makes the counting sets hold (at least) the policed elements of `sets`. Adding an element
 * that is there is a no-op that keeps its counter; one that is not (a table of a version without
 * drop_in6 / drop_out6, whose policed_in6 already had elements) is added, so a later `delete
 * element` of it cannot fail the transaction.
 */
export function mirrorFillScript(sets: PolicySets): string {
  return elementLines('add', sets, 'mirrors').map((l) => `${l}\n`).join('');
}

/** Pure: the script that makes the table hold exactly `sets` (structure included). */
export function replaceScript(sets: PolicySets, opts: PolicyTableOptions = DEFAULTS): string {
  const flush = [
    ...[...Object.values(SETS), ...DROP_SETS.map(([set]) => set)].map((set) => `flush set inet ${POLICY_TABLE} ${set}`),
    ...FAST_SETS.map((set) => `flush set bridge ${POLICY_TABLE} ${set}`),
  ];
  return [tableScript(opts), ...flush, ...elementLines('add', sets), ''].join('\n');
}

/** Pure: per set, what leaves and what comes (only sets that change). */
function setDiff(from: PolicySets, to: PolicySets): Array<{ name: PolicySetName; del: string[]; add: string[] }> {
  const out: Array<{ name: PolicySetName; del: string[]; add: string[] }> = [];
  for (const name of Object.keys(SETS) as PolicySetName[]) {
    const a = new Set(from[name]);
    const b = new Set(to[name]);
    const del = [...a].filter((e) => !b.has(e));
    const add = [...b].filter((e) => !a.has(e));
    if (del.length || add.length) out.push({ name, del, add });
  }
  return out;
}

/** Pure: the script of a change from one content to another (deletions first). */
export function diffScript(from: PolicySets, to: PolicySets): string {
  const d = setDiff(from, to);
  const pick = (k: 'del' | 'add'): Partial<PolicySets> => Object.fromEntries(d.map((x) => [x.name, x[k]]));
  const lines = [...elementLines('delete', pick('del')), ...elementLines('add', pick('add'))];
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/** The sets of single addresses. */
const PLAIN: Partial<Record<PolicySetName, 'ipv4_addr' | 'ipv6_addr'>> = { policedIn: 'ipv4_addr', policedOut: 'ipv4_addr', policedIn6: 'ipv6_addr', policedOut6: 'ipv6_addr' };
/** The IPv4 interval sets (ADDR . ADDR-RANGE . PROTO-RANGE . PORT-RANGE): rules, over netlink too. */
const RULES4: ReadonlySet<PolicySetName> = new Set<PolicySetName>(['allowIn', 'allowOut']);

/** Pure: an allow_in / allow_out element in resolve.ts's syntax → its first and last key. */
export function ruleKeys(element: string): { key: Buffer; end: Buffer } {
  const f = element.split(' . ');
  if (f.length !== 4) throw new Error(`refusing policy set element ${JSON.stringify(element)}`);
  const [addr, src, proto, port] = f.map((x) => x.split('-'));
  const num = (x: string, max: number): number => {
    if (!/^\d+$/.test(x) || Number(x) > max) throw new Error(`refusing policy set element ${JSON.stringify(element)}`);
    return Number(x);
  };
  const side = (i: 0 | 1): Buffer =>
    keyBytes([
      { type: 'ipv4_addr', value: addr[0] },
      { type: 'ipv4_addr', value: src[i] ?? src[0] },
      { type: 'inet_proto', value: num(proto[i] ?? proto[0], 255) },
      { type: 'inet_service', value: num(port[i] ?? port[0], 65535) },
    ]);
  if (addr.length !== 1) throw new Error(`refusing policy set element ${JSON.stringify(element)}`);
  return { key: side(0), end: side(1) };
}

/**
 * Pure: the netlink batches of a change, deletions first; null when an IPv6 interval set changes
 * (that one goes through `nft -f`). Every Join and release of an endpoint (pending → known), every
 * rule added and every named peer that moved: none of them may cost an `nft` process (~30–80 ms,
 * measured by bench:policy-docker) in a plugin call or on the way from a record to the kernel.
 */
export function elementBatches(from: PolicySets, to: PolicySets): ElementBatch[] | null {
  const d = setDiff(from, to);
  if (d.some((x) => !PLAIN[x.name] && !RULES4.has(x.name))) return null;
  const batches: ElementBatch[] = [];
  for (const op of ['destroy', 'add'] as const) {
    for (const x of d) {
      const elements = checked(op === 'destroy' ? x.del : x.add);
      const type = PLAIN[x.name];
      if (type) {
        const keys = elements.map((value) => keyBytes([{ type, value }]));
        for (const t of targets(x.name)) batches.push({ op, family: t.family, table: POLICY_TABLE, set: t.set, keys });
      } else {
        const pairs = elements.map(ruleKeys);
        batches.push({ op, family: 'inet', table: POLICY_TABLE, set: SETS[x.name], keys: pairs.map((p) => p.key), keyEnds: pairs.map((p) => p.end) });
      }
    }
  }
  return batches;
}

/** Puts the table in place and makes its sets hold exactly `sets`, in one transaction. */
export function replacePolicySets(sets: PolicySets, opts: PolicyTableOptions = DEFAULTS): Promise<void> {
  return exclusive(async () => {
    await mustRun('nft', ['-f', '-'], `set the ${POLICY_TABLE} table`, replaceScript(sets, opts));
  });
}

/**
 * Moves the sets from `from` (what the last call left, or what the kernel holds) to `to`, in one
 * transaction; `structure`: the table's chains are rewritten in it too (a start that finds the
 * table in place keeps its elements, and their drop counters, instead of replacing them).
 */
export function updatePolicySets(from: PolicySets, to: PolicySets, structure = false, opts: PolicyTableOptions = DEFAULTS): Promise<number> {
  const batches = structure ? null : elementBatches(from, to);
  if (batches) {
    const n = batches.reduce((a, b) => a + b.keys.length, 0);
    if (n === 0) return Promise.resolve(0);
    return exclusive(async () => {
      await changeSets(batches, `update the ${POLICY_TABLE} sets`);
      return n;
    });
  }
  const script = (structure ? tableScript(opts) + mirrorFillScript(from) : '') + diffScript(from, to);
  if (script === '') return Promise.resolve(0);
  return exclusive(async () => {
    await mustRun('nft', ['-f', '-'], `update the ${POLICY_TABLE} sets`, script);
    return script.split('\n').filter(Boolean).length;
  });
}

/** The families whose `vxnet-policy` table exists (none also when nft is missing: nothing to remove). */
async function existingTables(): Promise<Family[]> {
  const out: Family[] = [];
  for (const family of ['inet', 'bridge'] as const) {
    const r = await runTool('nft', ['list', 'table', family, POLICY_TABLE]).catch(() => null);
    if (r?.code === 0) out.push(family);
  }
  return out;
}

/** Whether the table (either family's) exists. */
export async function policyTableExists(): Promise<boolean> {
  return (await existingTables()).length > 0;
}

/** Removes the tables, inet and bridge (plugin disable, uninstall). Idempotent. */
export function removePolicyTable(): Promise<boolean> {
  return exclusive(async () => {
    const have = await existingTables();
    for (const family of have) await mustRun('nft', ['delete', 'table', family, POLICY_TABLE], `remove the ${family} ${POLICY_TABLE} table`);
    return have.length > 0;
  });
}

/** Packets dropped per policed address, IPv4 and IPv6 (inbound to it, outbound from it) since its element was added. */
export async function policyDrops(): Promise<{ in: Map<string, number>; out: Map<string, number> } | null> {
  const out = { in: new Map<string, number>(), out: new Map<string, number>() };
  for (const [set, direction] of DROP_SETS) {
    const into = out[direction];
    const r = await runTool('nft', ['-j', 'list', 'set', 'inet', POLICY_TABLE, set]).catch(() => null);
    if (!r || r.code !== 0) return null;
    try {
      const doc = JSON.parse(r.stdout) as { nftables?: Array<{ set?: { elem?: Array<{ elem?: { val?: unknown; counter?: { packets?: number } } } | unknown> } }> };
      for (const item of doc.nftables ?? []) {
        for (const e of item.set?.elem ?? []) {
          const el = (e as { elem?: { val?: unknown; counter?: { packets?: number } } }).elem;
          if (el && typeof el.val === 'string') into.set(el.val, el.counter?.packets ?? 0);
        }
      }
    } catch {
      return null;
    }
  }
  return out;
}

/**
 * Pure: the elements of each set in `nft -nn -p list table` output, in resolve.ts's own syntax
 * (nft prints a range that is a prefix as ADDRESS/len, IPv4 and IPv6: turned back into lo-hi).
 */
export function parseListing(text: string): PolicySets {
  const out = emptyPolicySets();
  const byName = new Map<string, PolicySetName>(Object.entries(SETS).map(([k, v]) => [v, k as PolicySetName]));
  const setRe = /set (\w+) \{([^}]*)\}/g;
  for (let m = setRe.exec(text); m; m = setRe.exec(text)) {
    const name = byName.get(m[1]);
    const elems = /elements = \{([^}]*)/.exec(m[2]);
    if (!name || !elems) continue;
    out[name] = elems[1]
      .split(',')
      .map((e) => e.trim())
      .filter(Boolean)
      .map((e) => e.split(' . ').map(prefixToRange).join(' . '));
  }
  return out;
}

function prefixToRange(part: string): string {
  if (!part.includes('/')) return part;
  try {
    const family = part.includes(':') ? ipaddr.IPv6 : ipaddr.IPv4;
    const lo = family.networkAddressFromCIDR(part).toString();
    const hi = family.broadcastAddressFromCIDR(part).toString();
    return lo === hi ? lo : `${lo}-${hi}`;
  } catch {
    return part;
  }
}

/** The chain rules that make the table enforce (a table without them polices nothing). */
const ENFORCING = [
  `ip daddr @${SETS.policedIn} jump in_check`,
  `ip saddr @${SETS.policedOut} jump out_check`,
  `@${SETS.allowIn} return`,
  `@${SETS.allowOut} return`,
  `ip6 daddr @${SETS.policedIn6} jump in_check6`,
  `ip6 saddr @${SETS.policedOut6} jump out_check6`,
];

/** The fast path's rules as nft lists them: without them it is only slower, with them it needs its mirrors. */
const FAST_RULES = [...FAST_PORTS.map((port) => `iifname "${port}" meta pkttype`), 'jump fast', 'notrack'];

/**
 * What the kernel holds now: null when the table is missing or incomplete (its chains lack a
 * rule), when the fast path's rules are not as `opts` wants, or when its copies of the policed
 * sets differ from the inet table's.
 */
export async function listPolicyElements(opts: PolicyTableOptions = DEFAULTS): Promise<PolicySets | null> {
  const list = async (family: Family): Promise<string | null> => {
    const r = await runTool('nft', ['-nn', '-p', 'list', 'table', family, POLICY_TABLE]).catch(() => null);
    return r && r.code === 0 ? r.stdout : null;
  };
  const inet = await list('inet');
  if (inet === null || !ENFORCING.every((rule) => inet.includes(rule))) return null;
  const fast = await list('bridge');
  // On: every rule there. Off: none of them (a table written while it was on is rewritten).
  if (fast === null || (opts.fastPath ? !FAST_RULES.every((rule) => fast.includes(rule)) : fast.includes('notrack'))) return null;
  const sets = parseListing(inet);
  const copies = parseListing(fast);
  const same = (a: string[], b: string[]): boolean => a.length === b.length && [...a].sort().join() === [...b].sort().join();
  for (const name of Object.keys(MIRRORS) as PolicySetName[]) if (!same(sets[name], copies[name])) return null;
  return sets;
}
