// vxnet's firewall: a CONSTANT set of rules, whatever the number of networks. Per-network state
// lives in two ipsets (firewall-sets.ts), so a packet on the 1,000th network walks the same few
// rules as one on the 1st, and a Join on a network whose bridge exists runs no tool at all.
//
// filter table, FORWARD jumps to VXNET-ISOLATION right after Docker's DOCKER-USER jump (first
// when there is none), i.e. before Docker's own chains:
//   -i vxb-+ -o vxb-+ --physdev-is-bridged ACCEPT  frames within one bridge: one network, local or
//                                                 through its VXLAN port (the short path for RTT)
//   -o vxb-+ ctstate RELATED,ESTABLISHED,DNAT ACCEPT  replies, and published ports (DNAT rules of
//                                                 the ports module) into a vxnet network
//   -o vxb-+ DROP                                 nothing else is routed into a vxnet network: not
//                                                 from another vxnet network, Docker's bridges, outside
//   -i vxb-+ ctstate RELATED,ESTABLISHED ACCEPT   replies out of a vxnet network
//   -i vxb-+ -o docker0|br-+|docker_gwbridge ! ctstate DNAT DROP   Docker's bridges only via their
//                                                 published ports
//   -i vxb-+ set vxnet-egress src,src ACCEPT       egress: only a non-internal network's subnet, and
//                                                 only from its own bridge (no spoofed sources)
//   -i vxb-+ DROP                                 internal networks, unknown bridges, spoofing
// Every packet that enters or leaves a vxnet bridge is decided here, so the FORWARD policy does
// not matter: the same holds on a host whose dockerd runs with --iptables=false (policy ACCEPT).
//
// nat table, POSTROUTING jumps to VXNET-MASQ:
//   ! -o vxb-+ set vxnet-masq src MASQUERADE       egress NAT: leaving through a non-vxnet interface;
//                                                 traffic within a network (bridged, even across hosts
//                                                 through VXLAN) leaves through its bridge: never NATed
//
// ensureFirewall() puts this in place at start and on every reconcile (which re-runs after a
// dockerd restart, when Docker re-inserts its jumps ahead of ours); it rewrites a chain whose
// content differs in one iptables-restore transaction, and removes the per-bridge rules and the
// VXNET-FORWARD chain of earlier vxnet versions (upgrade).
import { BRIDGE_PREFIX } from './types';
import { EXIT_NOT_FOUND, exclusive, mustRun, runTool } from './xtables';

export const ISOLATION_CHAIN = 'VXNET-ISOLATION';
export const MASQ_CHAIN = 'VXNET-MASQ';
/** The per-bridge ACCEPT chain of vxnet before the constant rules; removed on upgrade. */
export const LEGACY_FORWARD_CHAIN = 'VXNET-FORWARD';
export const EGRESS_SET = 'vxnet-egress';
export const MASQ_SET = 'vxnet-masq';
/** `ipset create` arguments after the name (firewall-sets.ts says what goes in them). */
export const SET_TYPES: Record<string, string> = {
  [EGRESS_SET]: 'hash:net,iface family inet',
  [MASQ_SET]: 'hash:net family inet',
};
const FORWARD = 'FORWARD';
const POSTROUTING = 'POSTROUTING';
const DOCKER_USER = 'DOCKER-USER';
const BRIDGES = `${BRIDGE_PREFIX}+`;
/** Docker's own bridges (its bridge driver's default names). */
export const DOCKER_BRIDGES = ['docker0', 'br-+', 'docker_gwbridge'];
const JUMP_COMMENT = ['-m', 'comment', '--comment', 'vxnet'];

type Table = 'filter' | 'nat';

/** The rules of VXNET-ISOLATION exactly as `iptables -S` prints them (without `-A CHAIN`). */
export function isolationRules(): string[] {
  return [
    `-i ${BRIDGES} -o ${BRIDGES} -m physdev --physdev-is-bridged -j ACCEPT`,
    `-o ${BRIDGES} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT`,
    `-o ${BRIDGES} -j DROP`,
    `-i ${BRIDGES} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
    ...DOCKER_BRIDGES.map((d) => `-i ${BRIDGES} -o ${d} -m conntrack ! --ctstate DNAT -j DROP`),
    `-i ${BRIDGES} -m set --match-set ${EGRESS_SET} src,src -j ACCEPT`,
    `-i ${BRIDGES} -j DROP`,
  ];
}

export function masqRules(): string[] {
  return [`! -o ${BRIDGES} -m set --match-set ${MASQ_SET} src -j MASQUERADE`];
}

interface ChainSpec {
  table: Table;
  chain: string;
  rules: string[];
  /** The built-in chain that jumps to it. */
  from: string;
  /** Where the jump goes: after DOCKER-USER (FORWARD), or anywhere (appended). */
  afterDockerUser: boolean;
}

function specs(): ChainSpec[] {
  return [
    { table: 'filter', chain: ISOLATION_CHAIN, rules: isolationRules(), from: FORWARD, afterDockerUser: true },
    { table: 'nat', chain: MASQ_CHAIN, rules: masqRules(), from: POSTROUTING, afterDockerUser: false },
  ];
}

/** What `iptables -t TABLE -S` shows, parsed just enough. */
interface TableView {
  chains: Set<string>;
  /** Rules per chain, as printed without the leading `-A CHAIN `. */
  rules: Map<string, string[]>;
}

/** Pure: parses `iptables -S` output. */
export function parseTable(text: string): TableView {
  const chains = new Set<string>();
  const rules = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const m = /^-([NPA]) (\S+)(?: (.*))?$/.exec(line.trim());
    if (!m) continue;
    chains.add(m[2]);
    if (m[1] !== 'A') continue;
    const list = rules.get(m[2]) ?? [];
    list.push(m[3] ?? '');
    rules.set(m[2], list);
  }
  return { chains, rules };
}

function target(rule: string): string | undefined {
  return /(?:^|\s)-j (\S+)/.exec(rule)?.[1];
}

/** 1-based position of the FORWARD jump, once every existing jump to the chain is gone. */
function wantedPosition(others: string[], spec: ChainSpec): number {
  return others.findIndex((r) => target(r) === DOCKER_USER) + 2; // 1 when there is no DOCKER-USER jump
}

function jumpInPlace(from: string[], spec: ChainSpec): boolean {
  const at = from.map((r, i) => (target(r) === spec.chain ? i : -1)).filter((i) => i >= 0);
  if (at.length !== 1) return false;
  if (!spec.afterDockerUser) return true;
  const others = from.filter((r) => target(r) !== spec.chain);
  return at[0] + 1 === wantedPosition(others, spec);
}

/**
 * Pure: the iptables-restore lines (without `*table` / `COMMIT`) that bring one table to what
 * vxnet wants, and a description of each change; no lines when everything is in place.
 */
export function planTable(view: TableView, table: Table): { lines: string[]; changes: string[] } {
  const lines: string[] = [];
  const changes: string[] = [];
  const legacy = table === 'filter' && view.chains.has(LEGACY_FORWARD_CHAIN);
  for (const spec of specs().filter((s) => s.table === table)) {
    const have = view.rules.get(spec.chain);
    if (!view.chains.has(spec.chain) || JSON.stringify(have ?? []) !== JSON.stringify(spec.rules)) {
      changes.push(view.chains.has(spec.chain) ? `${table} ${spec.chain}: rewrote ${have?.length ?? 0} rules as ${spec.rules.length}` : `${table} ${spec.chain}: created`);
      // Declaring a chain in a --noflush restore creates it, or flushes it if it exists.
      lines.push(`:${spec.chain} - [0:0]`, ...spec.rules.map((r) => `-A ${spec.chain} ${r}`));
    }
    const from = view.rules.get(spec.from) ?? [];
    // The old chain's jumps sit in FORWARD too: they go in the same renumbering as ours.
    const ours = (r: string): boolean => target(r) === spec.chain || (legacy && spec.from === FORWARD && target(r) === LEGACY_FORWARD_CHAIN);
    const stale = from.map((r, i) => (ours(r) ? i + 1 : 0)).filter((n) => n > 0);
    const hasLegacyJump = stale.some((n) => target(from[n - 1]) !== spec.chain);
    if (jumpInPlace(from, spec) && !hasLegacyJump) continue;
    // Deleted by number, highest first, so every number still points at the rule it named.
    for (const n of [...stale].reverse()) lines.push(`-D ${spec.from} ${n}`);
    const jump = `${JUMP_COMMENT.join(' ')} -j ${spec.chain}`;
    if (spec.afterDockerUser) {
      const pos = wantedPosition(from.filter((r) => !ours(r)), spec);
      lines.push(`-I ${spec.from} ${pos} ${jump}`);
      changes.push(`${table} ${spec.from}: jump to ${spec.chain} put at position ${pos}`);
    } else {
      lines.push(`-A ${spec.from} ${jump}`);
      changes.push(`${table} ${spec.from}: jump to ${spec.chain} added`);
    }
  }
  if (legacy) {
    lines.push(`-F ${LEGACY_FORWARD_CHAIN}`, `-X ${LEGACY_FORWARD_CHAIN}`);
    changes.push(`filter ${LEGACY_FORWARD_CHAIN}: removed with its ${view.rules.get(LEGACY_FORWARD_CHAIN)?.length ?? 0} per-bridge rules (earlier vxnet)`);
  }
  return { lines, changes };
}

async function readTable(table: Table): Promise<TableView> {
  return parseTable(await mustRun('iptables', ['-t', table, '-S'], `list the iptables ${table} table`));
}

async function ensureSets(dryRun: boolean): Promise<string[]> {
  const have = new Set((await mustRun('ipset', ['list', '-n'], 'list ipsets')).split('\n').map((s) => s.trim()));
  const missing = Object.entries(SET_TYPES).filter(([name]) => !have.has(name));
  if (missing.length === 0 || dryRun) return missing.map(([name]) => `ipset ${name}: created`);
  const input = missing.map(([name, type]) => `create ${name} ${type}\n`).join('');
  await mustRun('ipset', ['-exist', 'restore'], `create ipsets ${missing.map(([n]) => n).join(', ')}`, input);
  return missing.map(([name]) => `ipset ${name}: created`);
}

async function ensureFirewallLocked(dryRun: boolean): Promise<string[]> {
  // Sets first: the rules refer to them, and iptables refuses a rule naming a missing set.
  const changes = await ensureSets(dryRun);
  for (const table of ['filter', 'nat'] as const) {
    const plan = planTable(await readTable(table), table);
    changes.push(...plan.changes);
    if (plan.lines.length === 0 || dryRun) continue;
    // One transaction: no moment where a rewritten chain is empty and traffic falls through.
    await mustRun('iptables-restore', ['--noflush'], `update the iptables ${table} table (${plan.changes.join('; ')})`, `*${table}\n${plan.lines.join('\n')}\nCOMMIT\n`);
  }
  return changes;
}

/**
 * Puts vxnet's chains, jumps and sets in place (idempotent). Returns what it changed (dryRun:
 * what it would change); an empty list when everything was in place.
 */
export function ensureFirewall(opts: { dryRun?: boolean } = {}): Promise<string[]> {
  return exclusive(() => ensureFirewallLocked(opts.dryRun === true));
}

/** For firewall-sets.ts: a set went missing behind our back; put everything back. */
export function ensureFirewallUnlocked(): Promise<string[]> {
  return ensureFirewallLocked(false);
}

/** Removes vxnet's jumps, chains and sets (uninstall, tests); resolves when there is none. */
export async function removeFirewall(): Promise<void> {
  await exclusive(async () => {
    for (const [table, from, chains] of [
      ['filter', FORWARD, [ISOLATION_CHAIN, LEGACY_FORWARD_CHAIN]],
      ['nat', POSTROUTING, [MASQ_CHAIN]],
    ] as Array<[Table, string, string[]]>) {
      const view = await readTable(table);
      const lines: string[] = [];
      const jumps = (view.rules.get(from) ?? []).map((r, i) => (chains.includes(target(r) ?? '') ? i + 1 : 0)).filter((n) => n > 0);
      for (const n of jumps.reverse()) lines.push(`-D ${from} ${n}`);
      for (const c of chains.filter((c) => view.chains.has(c))) lines.push(`-F ${c}`, `-X ${c}`);
      if (lines.length > 0) await mustRun('iptables-restore', ['--noflush'], `remove vxnet's ${table} chains`, `*${table}\n${lines.join('\n')}\nCOMMIT\n`);
    }
    for (const set of Object.keys(SET_TYPES)) {
      const r = await runTool('ipset', ['destroy', set]);
      if (r.code !== 0 && r.code !== EXIT_NOT_FOUND) await mustRun('ipset', ['destroy', set], `destroy ipset ${set}`);
    }
  });
}
