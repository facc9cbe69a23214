// vxnet's firewall: a CONSTANT set of rules, whatever the number of networks. Per-network state
// lives in two ipsets (firewall-sets.ts), so a packet on the 1,000th network walks the same few
// rules as one on the 1st, and a Join on a network whose bridge exists runs no tool at all.
//
// filter table, VXNET-ISOLATION is jumped to from DOCKER-USER (which dockerd keeps first in
// FORWARD), or first in FORWARD when there is no DOCKER-USER; either way before Docker's rules:
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
// dockerd (re)start, which creates DOCKER-USER or re-inserts its jumps); it rewrites a chain whose
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

/** A rule's target (`-j X`), as `iptables -S` prints it. */
export function target(rule: string): string | undefined {
  return /(?:^|\s)-j (\S+)/.exec(rule)?.[1];
}

const JUMP = (chain: string): string => `${JUMP_COMMENT.join(' ')} -j ${chain}`;

/** Lines that delete every rule `doomed` picks from `chain`, by number, highest first. */
function deleteByNumber(chain: string, rules: string[], doomed: (r: string) => boolean): string[] {
  return rules.map((r, i) => (doomed(r) ? `-D ${chain} ${i + 1}` : '')).filter((l) => l !== '').reverse();
}

/** Rewrites `chain` (a --noflush restore flushes a declared chain) unless it holds exactly `rules`. */
function planChain(view: TableView, table: Table, chain: string, rules: string[], out: { lines: string[]; changes: string[] }): void {
  const have = view.rules.get(chain) ?? [];
  if (view.chains.has(chain) && JSON.stringify(have) === JSON.stringify(rules)) return;
  out.changes.push(view.chains.has(chain) ? `${table} ${chain}: rewrote ${have.length} rules as ${rules.length}` : `${table} ${chain}: created`);
  out.lines.push(`:${chain} - [0:0]`, ...rules.map((r) => `-A ${chain} ${r}`));
}

/**
 * Where the isolation jump lives. With dockerd's chains: in DOCKER-USER, before its final RETURN.
 * dockerd keeps the DOCKER-USER jump first in FORWARD and never touches the chain's rules, while
 * it inserts its own bridge rules (`-i br-X ! -o br-X -j ACCEPT`) at the top of FORWARD whenever
 * a network is created: a jump placed after DOCKER-USER in FORWARD would be pushed behind them.
 * Rules a user inserts into DOCKER-USER still come first. Without DOCKER-USER (dockerd
 * --iptables=false, or not started yet): first in FORWARD.
 */
function planIsolationJump(view: TableView, legacy: boolean, out: { lines: string[]; changes: string[] }): void {
  const fwd = view.rules.get(FORWARD) ?? [];
  const user = view.rules.get(DOCKER_USER) ?? [];
  const viaUser = view.chains.has(DOCKER_USER) && fwd.some((r) => target(r) === DOCKER_USER);
  const isJump = (r: string): boolean => target(r) === ISOLATION_CHAIN;
  const isLegacy = (r: string): boolean => legacy && target(r) === LEGACY_FORWARD_CHAIN;
  const home = viaUser ? user : fwd;
  const at = home.map((r, i) => (isJump(r) ? i : -1)).filter((i) => i >= 0);
  const lastReturn = user.lastIndexOf('-j RETURN');
  const placed = at.length === 1 && (viaUser ? lastReturn < 0 || at[0] < lastReturn : at[0] === 0);
  const strays = (viaUser ? fwd : user).some(isJump) || fwd.some(isLegacy);
  if (placed && !strays) return;
  out.lines.push(...deleteByNumber(FORWARD, fwd, (r) => isJump(r) || isLegacy(r)), ...deleteByNumber(DOCKER_USER, user, isJump));
  if (viaUser) {
    const rest = user.filter((r) => !isJump(r));
    const ret = rest.lastIndexOf('-j RETURN');
    out.lines.push(ret < 0 ? `-A ${DOCKER_USER} ${JUMP(ISOLATION_CHAIN)}` : `-I ${DOCKER_USER} ${ret + 1} ${JUMP(ISOLATION_CHAIN)}`);
    out.changes.push(`filter ${DOCKER_USER}: jump to ${ISOLATION_CHAIN} put before its RETURN`);
  } else {
    out.lines.push(`-I ${FORWARD} 1 ${JUMP(ISOLATION_CHAIN)}`);
    out.changes.push(`filter ${FORWARD}: jump to ${ISOLATION_CHAIN} put first`);
  }
}

/**
 * Pure: the iptables-restore lines (without `*table` / `COMMIT`) that bring one table to what
 * vxnet wants, and a description of each change; no lines when everything is in place.
 */
export function planTable(view: TableView, table: Table): { lines: string[]; changes: string[] } {
  const out = { lines: [] as string[], changes: [] as string[] };
  if (table === 'nat') {
    planChain(view, table, MASQ_CHAIN, masqRules(), out);
    const post = view.rules.get(POSTROUTING) ?? [];
    if (post.filter((r) => target(r) === MASQ_CHAIN).length !== 1) {
      out.lines.push(...deleteByNumber(POSTROUTING, post, (r) => target(r) === MASQ_CHAIN), `-A ${POSTROUTING} ${JUMP(MASQ_CHAIN)}`);
      out.changes.push(`nat ${POSTROUTING}: jump to ${MASQ_CHAIN} added`);
    }
    return out;
  }
  const legacy = view.chains.has(LEGACY_FORWARD_CHAIN);
  planChain(view, table, ISOLATION_CHAIN, isolationRules(), out);
  planIsolationJump(view, legacy, out);
  if (legacy) {
    out.lines.push(`-F ${LEGACY_FORWARD_CHAIN}`, `-X ${LEGACY_FORWARD_CHAIN}`);
    out.changes.push(`filter ${LEGACY_FORWARD_CHAIN}: removed with its ${view.rules.get(LEGACY_FORWARD_CHAIN)?.length ?? 0} per-bridge rules (earlier vxnet)`);
  }
  return out;
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
    for (const [table, froms, chains] of [
      ['filter', [FORWARD, DOCKER_USER], [ISOLATION_CHAIN, LEGACY_FORWARD_CHAIN]],
      ['nat', [POSTROUTING], [MASQ_CHAIN]],
    ] as Array<[Table, string[], string[]]>) {
      const view = await readTable(table);
      const lines = froms.flatMap((from) => deleteByNumber(from, view.rules.get(from) ?? [], (r) => chains.includes(target(r) ?? '')));
      for (const c of chains.filter((c) => view.chains.has(c))) lines.push(`-F ${c}`, `-X ${c}`);
      if (lines.length > 0) await mustRun('iptables-restore', ['--noflush'], `remove vxnet's ${table} chains`, `*${table}\n${lines.join('\n')}\nCOMMIT\n`);
    }
    for (const set of Object.keys(SET_TYPES)) {
      const r = await runTool('ipset', ['destroy', set]);
      if (r.code !== 0 && r.code !== EXIT_NOT_FOUND) await mustRun('ipset', ['destroy', set], `destroy ipset ${set}`);
    }
  });
}
