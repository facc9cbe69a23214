// Which rules of someone else's see a frame between two containers of one vxnet network on
// different hosts, before vxnet's own verdict on it: the rules the redirect fast path would take
// those frames past (`--fast-path auto` redirects only while there is none).
//
// With br_netfilter a bridged IPv4 frame walks the host's forward path. vxnet's verdict for it is
// the first rule of VXNET-ISOLATION (ACCEPT within one bridge), jumped to from DOCKER-USER (or
// first in FORWARD without it; firewall.ts). So, in the filter table:
//   - FORWARD's rules up to its jump to DOCKER-USER (dockerd keeps that jump first; a rule
//     inserted before it is someone's own, a jump to one of dockerd's chains is not), and
//     DOCKER-USER's up to vxnet's jump (a bare RETURN is dockerd's). Rules after vxnet's jump
//     never see these frames: it accepts them. Nor does a rule that names an interface no vxnet
//     bridge can have (`-i eth0`): a bridged frame's interfaces there are its bridge.
//   - No vxnet jump on that path at all (a dockerd restart rebuilding its chains, a flush): what
//     decides then is not known, so it counts as a rule of someone else's until reconcile puts
//     the jump back.
// And nftables tables other than iptables' own and vxnet's: a base chain on the bridge family
// (any hook: the redirect skips the bridge), on the netdev family (tc's redirect comes before a
// device's ingress hook), or on ip/inet's prerouting, forward or postrouting hooks, with a rule
// or a drop policy. IPv6 is not redirected (the port entries match IPv4
// sources), so ip6tables and ip6 tables do not matter. iptables' mangle, raw and nat tables are
// not read: dockerd and vxnet keep nothing for these frames there, and a rule there that must
// see them is rare enough to leave to `--fast-path on`.
import { vxError } from '../errors';
import { ISOLATION_CHAIN, parseTable, target } from './firewall';
import { BRIDGE_PREFIX } from './types';
import { mustRun, runTool } from './xtables';

const DOCKER_USER = 'DOCKER-USER';
/** iptables-nft's own tables: filter is read through `iptables -S`, the others not at all (above). */
const IPTABLES_TABLES = new Set(['filter', 'nat', 'mangle', 'raw', 'security']);
const BRIDGED_HOOKS = new Set(['prerouting', 'forward', 'postrouting']);

/**
 * Pure: whether a rule names an in- or out-interface no vxnet bridge can have. With br_netfilter
 * a bridged frame's interfaces in FORWARD are its bridge (vxb-N), so `-i eth0` (Docker's own
 * DOCKER-USER example) or `-o docker0` never sees these frames. Negated and physdev matches count.
 */
export function namesOtherInterface(rule: string): boolean {
  const words = rule.split(/\s+/);
  return words.some((w, i) => {
    if ((w !== '-i' && w !== '-o') || words[i - 1] === '!' || words[i + 1] === undefined) return false;
    const name = words[i + 1];
    if (!name.endsWith('+')) return !name.startsWith(BRIDGE_PREFIX);
    const prefix = name.slice(0, -1);
    return !(BRIDGE_PREFIX.startsWith(prefix) || prefix.startsWith(BRIDGE_PREFIX));
  });
}

/** Pure: from `iptables -S` (filter), the rules before vxnet's verdict, as `CHAIN rule`. */
export function rulesBeforeVxnet(text: string): string[] {
  const view = parseTable(text);
  const found: string[] = [];
  for (const rule of view.rules.get('FORWARD') ?? []) {
    const to = target(rule);
    if (to === ISOLATION_CHAIN) return found;
    // dockerd's own chains (DOCKER-INGRESS on a swarm node can sit above DOCKER-USER) are not
    // someone's rules for these frames: nobody else writes there.
    if (to !== undefined && to !== DOCKER_USER && /^DOCKER(?:-|$)/.test(to)) continue;
    if (to !== DOCKER_USER) {
      if (!namesOtherInterface(rule)) found.push(`FORWARD ${rule}`);
      continue;
    }
    for (const r of view.rules.get(DOCKER_USER) ?? []) {
      if (target(r) === ISOLATION_CHAIN) return found;
      if (r === '-j RETURN') break;
      if (!namesOtherInterface(r)) found.push(`${DOCKER_USER} ${r}`);
    }
  }
  return [...found, `no jump to ${ISOLATION_CHAIN} in FORWARD or ${DOCKER_USER}`];
}

interface NftChain {
  family: string;
  table: string;
  name: string;
  hook?: string;
  policy?: string;
}

/** Pure: from `nft -j list chains`, the base chains of other tables that bridged frames pass. */
export function foreignHookChains(json: string): NftChain[] {
  const items = (JSON.parse(json) as { nftables?: Array<{ chain?: NftChain }> }).nftables ?? [];
  return items
    .map((i) => i.chain)
    .filter((c): c is NftChain => c !== undefined && c.hook !== undefined)
    .filter((c) => !c.table.startsWith('vxnet-'))
    .filter((c) => !((c.family === 'ip' || c.family === 'ip6') && IPTABLES_TABLES.has(c.table)))
    .filter((c) => c.family === 'bridge' || c.family === 'netdev' || ((c.family === 'ip' || c.family === 'inet') && BRIDGED_HOOKS.has(c.hook ?? '')));
}

/** Pure: from `nft -j list chain …`, how many rules it holds. */
export function ruleCount(json: string): number {
  return ((JSON.parse(json) as { nftables?: Array<{ rule?: unknown }> }).nftables ?? []).filter((i) => i.rule !== undefined).length;
}

/** Whether iptables writes through nftables (its changes then show in `nft monitor`). */
export async function iptablesOnNftables(): Promise<boolean> {
  const r = await runTool('iptables', ['-V']);
  return r.code === 0 && r.stdout.includes('nf_tables');
}

/**
 * What sees those frames before vxnet's verdict, one line each (empty: nothing of anyone
 * else's). Rejects when a table cannot be read.
 */
export async function forwardPathRules(): Promise<string[]> {
  const found = rulesBeforeVxnet(await mustRun('iptables', ['-t', 'filter', '-S'], 'list the iptables filter table')).map((r) => `iptables ${r}`);
  const r = await runTool('nft', ['-j', 'list', 'chains']);
  if (r.code !== 0) throw vxError('VXNET_ERR_FIREWALL', `could not list the nftables chains: ${r.stderr.trim()}`);
  for (const c of foreignHookChains(r.stdout)) {
    const rules = ruleCount(await mustRun('nft', ['-j', 'list', 'chain', c.family, c.table, c.name], `list nftables chain ${c.family} ${c.table} ${c.name}`));
    if (rules > 0 || c.policy === 'drop') found.push(`nft ${c.family} ${c.table} ${c.name} (hook ${c.hook}): ${rules} rules, policy ${c.policy ?? 'accept'}`);
  }
  return found;
}
