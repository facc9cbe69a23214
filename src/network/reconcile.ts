// Reconcile: store ⇄ kernel ⇄ dockerd, on every start and on demand (`vxnet reconcile`).
//
// dockerd does not replay lost calls (PROTOCOL.md §1): a `docker stop` while vxnet was down
// loses Leave/DeleteEndpoint/ReleaseAddress, a `docker network rm` loses DeleteNetwork and the
// IPAM releases, and a call in flight when vxnet died is re-sent empty and refused. So at start
// vxnet compares its own records for this host with what dockerd still has, and with the kernel:
//   - networks dockerd no longer has: their devices, records and this host's pool shares go;
//   - endpoints whose container is gone: veth, record and addresses go;
//   - vxnet's constant firewall chains and sets are put back in place (a dockerd restart puts its
//     own jumps ahead of ours; an upgrade leaves the per-bridge rules of earlier versions);
//   - the anti-spoofing table is put back in place and its elements follow this host's endpoints
//     in the store (network/antispoof.ts);
//   - networks with live endpoints: bridge, firewall entries and VXLAN device are recreated if missing;
//   - vxnet-named links and firewall set entries that nothing owns are removed;
//   - published ports (ports/publisher.ts): records of endpoints that are gone lose their NAT
//     rules and records, live ones get rules and port reservations back, untagged leftovers go;
//   - the policy table (src/policy): its sets made to match the records (elements of endpoints
//     that are gone removed, missing ones added, the table rebuilt if someone deleted it);
//   - container addresses this host took that no endpoint uses (a crash between RequestAddress
//     and CreateEndpoint), older than ORPHAN_ADDRESS_GRACE_MS, are released.
// Without an answer from dockerd nothing is deleted on its account (never act on missing
// information); only the kernel is repaired. Another host's records are never touched.
import type { Logger } from '../log';
import type { DockerClient } from '../docker/docker-view';
import type { Dataplane } from './dataplane-port';
import type { NetworkDriver } from './network-driver';
import { LINK_PREFIX } from '../dataplane/types';
import { LinkNotFoundError } from '../errors';
import { BRIDGE_PREFIX, VETH_HOST_PREFIX, VETH_PEER_PREFIX, VXLAN_PREFIX } from './names';
import { syncAntispoof } from './antispoof';

/**
 * An address or endpoint younger than this may belong to a `docker run` in progress (between
 * RequestAddress and CreateEndpoint, or before dockerd lists the container on the network).
 */
export const ORPHAN_ADDRESS_GRACE_MS = 60_000;
/**
 * An address is never released as an orphan younger than this, whatever the configured grace:
 * dockerd retries a call to a plugin that is down for about 15 s, so a CreateEndpoint may arrive
 * that long after its RequestAddress (the driver restarted in between). Releasing the address
 * before it lands gives it to a second container (seen in the crash-churn test with a 5 s grace).
 */
export const DOCKERD_RETRY_WINDOW_MS = 20_000;

export interface OrphanAddressSource {
  boundPools(): Promise<string[]>;
  addressesOf(poolId: string): Promise<Array<{ ip: string; record: { kind: string; host?: string; at?: number } }>>;
  /** null when released; the endpoint holding it when refused (network/address-claims.ts). */
  releaseAddress(poolId: string, address: string): Promise<string | null>;
}

/** What the published-ports step changed (ports/publisher.ts implements it). */
export interface PortsPlan {
  stalePorts: string[];
  repairPorts: string[];
  orphanPortRules: string[];
}

/** The policy step: the kernel's policy sets against the records (after the endpoint steps above). */
export interface PolicyReconciler {
  reconcile(dryRun: boolean): Promise<string[]>;
}

/** The published-ports step; absent where ports are not served. */
export interface PortReconciler {
  /** `liveEndpoints` is read after the step has listed its records (see publisher.ts). */
  reconcile(liveEndpoints: () => Promise<Set<string>>, dryRun: boolean): Promise<PortsPlan>;
}

export interface ReconcileDeps {
  driver: NetworkDriver;
  ports?: PortReconciler;
  /** The policy table (src/policy); absent in unit tests of the other steps. */
  policy?: PolicyReconciler;
  ipam: OrphanAddressSource;
  dataplane: Dataplane;
  docker: DockerClient | null;
  host: string;
  log: Logger;
  /** Default ORPHAN_ADDRESS_GRACE_MS. */
  graceMs?: number;
  now?: () => number;
}

/** What a pass changes, one list per kind; the order is the order of the pass. */
export const CHANGE_KINDS = [
  'staleNetworks',
  'staleEndpoints',
  'firewall',
  'antispoof',
  'repairNetworks',
  'stalePorts',
  'repairPorts',
  'orphanPortRules',
  'orphanLinks',
  'orphanRules',
  'orphanAddresses',
  'policy',
] as const;
export type ChangeKind = (typeof CHANGE_KINDS)[number];

export type ReconcilePlan = { dockerdAnswered: boolean } & Record<ChangeKind, string[]>;

export function changeCount(plan: ReconcilePlan): number {
  return CHANGE_KINDS.reduce((n, kind) => n + plan[kind].length, 0);
}

export async function reconcile(deps: ReconcileDeps, opts: { dryRun: boolean }): Promise<ReconcilePlan> {
  const { driver, dataplane, log } = deps;
  const now = deps.now ?? Date.now;
  const grace = deps.graceMs ?? ORPHAN_ADDRESS_GRACE_MS;
  let state = await driver.localState();
  const view = deps.docker ? await deps.docker.view(state.dockerNetworks.map((d) => d.networkId)) : null;
  const plan: ReconcilePlan = {
    dockerdAnswered: view !== null,
    staleNetworks: [],
    staleEndpoints: [],
    firewall: [],
    antispoof: [],
    repairNetworks: [],
    stalePorts: [],
    repairPorts: [],
    orphanPortRules: [],
    orphanLinks: [],
    orphanRules: [],
    orphanAddresses: [],
    policy: [],
  };

  // Endpoints this pass drops (a dry run drops nothing, yet must plan their ports as stale).
  const dropped = new Set<string>();
  if (view) {
    const poolsOf = new Map(state.dockerNetworks.map((d) => [d.networkId, d.poolIds]));
    for (const d of state.dockerNetworks) {
      if (view.networks.has(d.networkId)) continue;
      for (const ep of state.endpoints) if (ep.rec.networkId === d.networkId) dropped.add(ep.endpointId);
      plan.staleNetworks.push(`${d.networkId.slice(0, 12)} (${d.lnet})`);
      if (!opts.dryRun) await driver.dropStaleNetwork(d.networkId, d.poolIds);
    }
    for (const ep of state.endpoints) {
      if (!view.networks.has(ep.rec.networkId) || view.endpoints.has(ep.endpointId)) continue;
      if (ep.rec.at !== undefined && now() - ep.rec.at < grace) continue;
      plan.staleEndpoints.push(`${ep.endpointId.slice(0, 12)} (${ep.rec.ipv4 ?? ep.rec.ipv6})`);
      dropped.add(ep.endpointId);
      if (!opts.dryRun) await driver.dropStaleEndpoint(ep.lnet, ep.endpointId, ep.rec, poolsOf.get(ep.rec.networkId) ?? []);
    }
    if (!opts.dryRun) state = await driver.localState();
  }

  // Before the repairs: they add set entries, and the sets must exist.
  plan.firewall = await dataplane.ensureFirewall({ dryRun: opts.dryRun });
  // Before the repairs too: a veth put back on its bridge must find its port's entries.
  plan.antispoof = await syncAntispoof(
    dataplane,
    async () => (await driver.localState()).endpoints.filter((e) => !dropped.has(e.endpointId)),
    opts.dryRun,
  );

  // The kernel follows the store: every network with a live endpoint here has its devices, and
  // its endpoints' veths sit on its bridge. Ensuring is idempotent, so every such network is
  // ensured; the plan names those whose bridge was missing.
  let present = new Set((await dataplane.listLinks(LINK_PREFIX)).map((l) => l.name));
  const withEndpoints = new Set(state.endpoints.map((e) => e.lnet));
  for (const lnet of withEndpoints) {
    const net = state.networks.get(lnet);
    if (!net) continue;
    if (!present.has(`${BRIDGE_PREFIX}${net.vni}`)) plan.repairNetworks.push(lnet);
    // Young endpoints may be between CreateEndpoint and Join: their own Join builds their veth.
    const settled = state.endpoints.filter((e) => e.lnet === lnet && (e.rec.at === undefined || now() - e.rec.at >= grace));
    if (!opts.dryRun) await driver.repairNetwork(net, settled);
  }
  if (!opts.dryRun) present = new Set((await dataplane.listLinks(LINK_PREFIX)).map((l) => l.name));

  if (deps.ports) {
    const live = async (): Promise<Set<string>> => {
      const endpoints = opts.dryRun ? state.endpoints : (await driver.localState()).endpoints;
      return new Set(endpoints.map((e) => e.endpointId).filter((id) => !dropped.has(id)));
    };
    Object.assign(plan, await deps.ports.reconcile(live, opts.dryRun));
  }

  // The state read above is older than the links and firewall entries listed now: a docker run
  // that dockerd was retrying through a restart may have written its records and built its
  // bridge, entries and veth since. Records are written before their kernel objects
  // (CreateEndpoint before Join), so one state read after both listings covers everything in
  // them; the older one would take a live container's interface away (seen in the kill -9 churn
  // test).
  const entries = await dataplane.listFirewallEntries();
  const current = opts.dryRun ? state : await driver.localState();
  const expected = driver.expectedLinks(current);
  const ours = [BRIDGE_PREFIX, VXLAN_PREFIX, VETH_HOST_PREFIX, VETH_PEER_PREFIX];
  for (const name of [...present].sort()) {
    if (expected.has(name) || !ours.some((p) => name.startsWith(p))) continue;
    // A container end back in the host (dockerd moved it back while vxnet was down) dies with its pair.
    plan.orphanLinks.push(name);
    if (!opts.dryRun) await removeLink(dataplane, name);
  }
  const wantedEntries = new Set(driver.expectedFirewall(current).map((e) => `${e.set} ${e.member}`));
  const orphanEntries = entries.filter((e) => !wantedEntries.has(`${e.set} ${e.member}`));
  plan.orphanRules = orphanEntries.map((e) => `${e.set} ${e.member}`);
  if (!opts.dryRun && orphanEntries.length > 0) await dataplane.removeFirewallEntries(orphanEntries);

  if (view) {
    const used = new Set(state.endpoints.flatMap((e) => [e.rec.ipv4, e.rec.ipv6]).filter((a): a is string => !!a).map((a) => a.split('/')[0]));
    for (const poolId of await deps.ipam.boundPools()) {
      for (const { ip, record } of await deps.ipam.addressesOf(poolId)) {
        if (record.kind !== 'container' || record.host !== deps.host || used.has(ip)) continue;
        if (record.at === undefined || now() - record.at < Math.max(grace, DOCKERD_RETRY_WINDOW_MS)) continue;
        // The release re-checks under the address's lock: `state` was read at the start of the
        // pass, and a CreateEndpoint dockerd retried through a restart may have landed since.
        if (!opts.dryRun && (await deps.ipam.releaseAddress(poolId, ip)) !== null) continue;
        plan.orphanAddresses.push(`${ip} (${poolId})`);
      }
    }
  }

  // Last: dropped endpoints' records are gone by now, so their elements go too.
  if (deps.policy) plan.policy = await deps.policy.reconcile(opts.dryRun);

  log.info({ ...plan, changed: changeCount(plan), dryRun: opts.dryRun }, opts.dryRun ? 'reconcile plan' : 'reconcile done');
  return plan;
}

async function removeLink(dataplane: Dataplane, name: string): Promise<void> {
  try {
    if (name.startsWith(BRIDGE_PREFIX)) {
      // Its firewall entries are orphans too: removed below with the others.
      await dataplane.removeBridge(name);
    } else if (name.startsWith(VXLAN_PREFIX)) {
      await dataplane.removeVxlan(name);
    } else {
      await dataplane.removeVeth(name);
    }
  } catch (err) {
    // Deleting one end of a veth pair takes the other with it: "not found" is done.
    if (!(err instanceof LinkNotFoundError)) throw err;
  }
}
