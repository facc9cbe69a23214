// Per-network firewall state: membership of two ipsets that firewall.ts's constant rules consult
// (hash lookups: the cost per packet does not grow with the number of networks).
//   vxnet-egress (hash:net,iface): "SUBNET,BRIDGE" of every non-internal network with a bridge
//                on this host. Egress is allowed only for that subnet from that bridge.
//   vxnet-masq   (hash:net): SUBNET of every such network whose traffic is masqueraded on the way
//                out (not with -o com.docker.network.bridge.enable_ip_masquerade=false).
// Written when a network's bridge is created and removed with it (one `ipset restore` each);
// reconcile removes entries nothing owns. IPv4 only: IPv6 subnets get no entry.
import { vxError } from '../errors';
import { IFNAME_MAX } from './types';
import { EXIT_NOT_FOUND, exclusive, mustRun, runTool, toolFailed } from './xtables';
import { EGRESS_SET, MASQ_SET, SET_TYPES, ensureFirewallUnlocked } from './firewall';

const IFNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const IPV4_CIDR_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

export interface BridgeRuleOptions {
  /** The network's IPv4 subnet (a.b.c.d/len), or null for an IPv6-only network. */
  subnet: string | null;
  /** Docker's --internal: no egress at all. */
  internal: boolean;
  /** Source NAT for traffic leaving through a non-vxnet interface (Docker's enable_ip_masquerade). */
  masquerade: boolean;
}

/** One member of one of vxnet's sets. */
export interface FirewallEntry {
  set: typeof EGRESS_SET | typeof MASQ_SET;
  /** As ipset prints it: "10.1.0.0/24,vxb-256" (egress) or "10.1.0.0/24" (masq). */
  member: string;
}

function validBridge(bridge: string): string {
  if (bridge.length > IFNAME_MAX || !IFNAME_RE.test(bridge)) {
    throw vxError('VXNET_ERR_FIREWALL', `refusing firewall entries for invalid interface name ${JSON.stringify(bridge)}`);
  }
  return bridge;
}

/** The subnet as ipset prints it; anything else is refused (it goes into ipset's input). */
function validSubnet(subnet: string): string {
  const m = IPV4_CIDR_RE.exec(subnet);
  if (!m || m.slice(1, 5).some((o) => Number(o) > 255) || Number(m[5]) < 1 || Number(m[5]) > 32) {
    throw vxError('VXNET_ERR_FIREWALL', `refusing firewall entries for invalid IPv4 subnet ${JSON.stringify(subnet)}`);
  }
  // ipset prints a /32 as the bare address.
  const prefix = Number(m[5]);
  return m.slice(1, 5).map(Number).join('.') + (prefix === 32 ? '' : `/${prefix}`);
}

/** Pure: the entries a network's bridge must have, given its options. */
export function bridgeEntries(bridge: string, opts: BridgeRuleOptions): FirewallEntry[] {
  const br = validBridge(bridge);
  if (opts.subnet === null || opts.internal) return [];
  const subnet = validSubnet(opts.subnet);
  const out: FirewallEntry[] = [{ set: EGRESS_SET, member: `${subnet},${br}` }];
  if (opts.masquerade) out.push({ set: MASQ_SET, member: subnet });
  return out;
}

/** Every entry a bridge could have had with this subnet (what removal deletes). */
function possibleEntries(bridge: string, subnet: string | null): FirewallEntry[] {
  return subnet === null ? [] : bridgeEntries(bridge, { subnet, internal: false, masquerade: true });
}

function key(e: FirewallEntry): string {
  return `${e.set} ${e.member}`;
}

/** Adds and deletes in one `ipset restore`; a missing set has everything put back, then retried. */
async function apply(add: FirewallEntry[], del: FirewallEntry[], action: string): Promise<void> {
  if (add.length === 0 && del.length === 0) return;
  const input = [...del.map((e) => `del ${key(e)}\n`), ...add.map((e) => `add ${key(e)}\n`)].join('');
  const r = await runTool('ipset', ['-exist', 'restore'], input);
  if (r.code === 0) return;
  if (r.code !== EXIT_NOT_FOUND || !/does not exist/i.test(r.stderr)) throw toolFailed(action, r);
  await ensureFirewallUnlocked();
  await mustRun('ipset', ['-exist', 'restore'], action, input);
}

/**
 * The network's entries: egress and NAT for a non-internal network, none for an internal one
 * (entries of the other kind are deleted, so options that changed take effect). One process.
 */
export async function ensureBridgeRules(bridge: string, opts: BridgeRuleOptions): Promise<void> {
  const want = bridgeEntries(bridge, opts);
  const wanted = new Set(want.map(key));
  const drop = opts.subnet === null ? [] : possibleEntries(bridge, opts.subnet).filter((e) => !wanted.has(key(e)));
  await exclusive(() => apply(want, drop, `add firewall entries of ${bridge}`));
}

/** Removes the entries of a bridge's network; resolves when there are none. */
export async function removeBridgeRules(bridge: string, subnet: string | null): Promise<void> {
  const entries = possibleEntries(bridge, subnet);
  await exclusive(() => apply([], entries, `remove firewall entries of ${bridge}`));
}

/** Every member of vxnet's sets (for reconcile); none when the sets do not exist. */
export async function listFirewallEntries(): Promise<FirewallEntry[]> {
  return exclusive(async () => {
    const out: FirewallEntry[] = [];
    for (const set of [EGRESS_SET, MASQ_SET] as const) {
      const r = await runTool('ipset', ['save', set]);
      if (r.code === EXIT_NOT_FOUND) continue;
      if (r.code !== 0) throw toolFailed(`list ipset ${set}`, r);
      for (const line of r.stdout.split('\n')) {
        const m = new RegExp(`^add ${set} (\\S+)`).exec(line.trim());
        if (m) out.push({ set, member: m[1] });
      }
    }
    return out;
  });
}

/** Deletes the given entries (reconcile's orphans); entries already gone are fine. */
export async function removeFirewallEntries(entries: FirewallEntry[]): Promise<void> {
  for (const e of entries) {
    // They come from listFirewallEntries or bridgeEntries; checked again, as they go into ipset's input.
    if (!/^[0-9./]+(,[A-Za-z0-9_.-]+)?$/.test(e.member) || !(e.set in SET_TYPES)) {
      throw vxError('VXNET_ERR_FIREWALL', `refusing to remove invalid firewall entry ${JSON.stringify(e)}`);
    }
  }
  await exclusive(() => apply([], entries, `remove ${entries.length} firewall entries`));
}
