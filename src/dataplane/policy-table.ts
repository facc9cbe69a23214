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
import * as ipaddr from 'ipaddr.js';
import { exclusive, mustRun, runTool } from './xtables';
import { changeSets, ElementBatch, keyBytes } from './nft-elements';

export const POLICY_TABLE = 'vxnet-policy';
export const DROPS_IN = 'drops_in';
export const DROPS_OUT = 'drops_out';
const DROP_IN = 'drop_in';
const DROP_OUT = 'drop_out';
const DROP_IN6 = 'drop_in6';
const DROP_OUT6 = 'drop_out6';
/** Sets that hold the same elements as another (drop counters per policed address). */
const MIRRORS: Partial<Record<PolicySetName, string>> = { policedIn: DROP_IN, policedOut: DROP_OUT, policedIn6: DROP_IN6, policedOut6: DROP_OUT6 };
/** The counting sets, by the direction of the drops they count. */
const DROP_SETS = [[DROP_IN, 'in'], [DROP_OUT, 'out'], [DROP_IN6, 'in'], [DROP_OUT6, 'out']] as const;
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

/** The table's structure (no elements): sets, counters and chains as one nft script. Pure. */
export function tableScript(): string {
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
    '',
  ].join('\n');
}

function checked(elements: string[]): string[] {
  for (const e of elements) if (!ELEMENT_RE.test(e)) throw new Error(`refusing policy set element ${JSON.stringify(e)}`);
  return elements;
}

function elementLines(verb: 'add' | 'delete', sets: Partial<PolicySets>, only: 'all' | 'mirrors' = 'all'): string[] {
  const out: string[] = [];
  for (const [name, elements] of Object.entries(sets) as Array<[PolicySetName, string[]]>) {
    if (elements.length === 0) continue;
    const targets = only === 'mirrors' ? [MIRRORS[name]] : [SETS[name], MIRRORS[name]];
    for (const set of targets) if (set) out.push(`${verb} element inet ${POLICY_TABLE} ${set} { ${checked(elements).join(', ')} }`);
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
export function replaceScript(sets: PolicySets): string {
  const flush = [...Object.values(SETS), ...DROP_SETS.map(([s]) => s)].map((s) => `flush set inet ${POLICY_TABLE} ${s}`);
  return [tableScript(), ...flush, ...elementLines('add', sets), ''].join('\n');
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
        for (const set of [SETS[x.name], MIRRORS[x.name]]) if (set) batches.push({ op, family: 'inet', table: POLICY_TABLE, set, keys });
      } else {
        const pairs = elements.map(ruleKeys);
        batches.push({ op, family: 'inet', table: POLICY_TABLE, set: SETS[x.name], keys: pairs.map((p) => p.key), keyEnds: pairs.map((p) => p.end) });
      }
    }
  }
  return batches;
}

/** Puts the table in place and makes its sets hold exactly `sets`, in one transaction. */
export function replacePolicySets(sets: PolicySets): Promise<void> {
  return exclusive(async () => {
    await mustRun('nft', ['-f', '-'], `set the ${POLICY_TABLE} table`, replaceScript(sets));
  });
}

/**
 * Moves the sets from `from` (what the last call left, or what the kernel holds) to `to`, in one
 * transaction; `structure`: the table's chains are rewritten in it too (a start that finds the
 * table in place keeps its elements, and their drop counters, instead of replacing them).
 */
export function updatePolicySets(from: PolicySets, to: PolicySets, structure = false): Promise<number> {
  const batches = structure ? null : elementBatches(from, to);
  if (batches) {
    const n = batches.reduce((a, b) => a + b.keys.length, 0);
    if (n === 0) return Promise.resolve(0);
    return exclusive(async () => {
      await changeSets(batches, `update the ${POLICY_TABLE} sets`);
      return n;
    });
  }
  const script = (structure ? tableScript() + mirrorFillScript(from) : '') + diffScript(from, to);
  if (script === '') return Promise.resolve(0);
  return exclusive(async () => {
    await mustRun('nft', ['-f', '-'], `update the ${POLICY_TABLE} sets`, script);
    return script.split('\n').filter(Boolean).length;
  });
}

/** Whether the table exists (false also when nft is missing: then there is nothing to remove). */
export async function policyTableExists(): Promise<boolean> {
  try {
    return (await runTool('nft', ['list', 'table', 'inet', POLICY_TABLE])).code === 0;
  } catch {
    return false;
  }
}

/** Removes the table (plugin disable, uninstall). Idempotent. */
export function removePolicyTable(): Promise<boolean> {
  return exclusive(async () => {
    if (!(await policyTableExists())) return false;
    await mustRun('nft', ['delete', 'table', 'inet', POLICY_TABLE], `remove the ${POLICY_TABLE} table`);
    return true;
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

/** What the kernel holds now: null when the table is missing or incomplete (its chains lack a rule). */
export async function listPolicyElements(): Promise<PolicySets | null> {
  const r = await runTool('nft', ['-nn', '-p', 'list', 'table', 'inet', POLICY_TABLE]).catch(() => null);
  if (!r || r.code !== 0) return null;
  if (!ENFORCING.every((rule) => r.stdout.includes(rule))) return null;
  return parseListing(r.stdout);
}
