// Hosts that never come back. A host whose lease expired keeps its addresses (its containers
// may still run, cut off from the store); only after VXNET_DEAD_HOST_GRACE without a lease are
// its records released, by whichever live host gets there first, exactly once:
//   1. Any host that sees records of a host with no hosts/<h> key writes deadhosts/<h> =
//      {since} with create-if-absent: the first to notice sets the clock, later ones keep it.
//   2. Once the grace has passed, a host claims the cleanup by compare-and-swap on that key
//      (one claim wins), releases the dead host's endpoints, networks and pool shares (each
//      step idempotent), then deletes the marker. A claimer that dies mid-way leaves a stale
//      claim that another host takes over after CLAIM_TIMEOUT_MS; repeating the steps is harmless.
//   3. If hosts/<h> reappears (it came back), the marker is dropped and the clock stops.
import type { Logger } from '../log';
import type { Store } from '../store/types';
import { getJson, listJson, Keys } from '../store/json';
import type { DockerNetworkRecord, EndpointRecord } from './records';

/** A claim older than this is presumed abandoned by a claimer that died. */
export const CLAIM_TIMEOUT_MS = 60_000;

export interface DeadHostRecord {
  since: number;
  claimedBy?: string;
  claimedAt?: number;
}

export interface DeadHostDeps {
  store: Store;
  keys: Keys;
  host: string;
  graceMs: number;
  driver: { forgetHost(host: string): Promise<string[]> };
  ipam: { poolsOf(host: string): Promise<string[]>; releaseHostFromPool(poolId: string, host: string): Promise<void> };
  log: Logger;
  now?: () => number;
}

/** One pass; returns the hosts whose records this pass released. */
export async function sweepDeadHosts(deps: DeadHostDeps): Promise<string[]> {
  const { store, keys, log } = deps;
  const now = deps.now ?? Date.now;
  const alive = new Set((await store.list(keys.hosts())).map((kv) => kv.key.slice(keys.hosts().length)));
  const known = await hostsWithRecords(deps);
  for (const h of known) {
    if (h === deps.host || alive.has(h)) continue;
    if (await store.createIfAbsent(keys.deadHost(h), JSON.stringify({ since: now() } satisfies DeadHostRecord))) {
      log.warn({ deadHost: h }, 'host has no lease: its records are released after the grace period unless it returns');
    }
  }
  const released: string[] = [];
  for (const marker of await listJson<DeadHostRecord>(store, keys.deadHosts())) {
    const h = marker.key.slice(keys.deadHosts().length);
    if (alive.has(h)) {
      await store.delete(marker.key, marker.modRevision);
      log.info({ host: h }, 'host is back: its records stay');
      continue;
    }
    if (now() - marker.value.since < deps.graceMs) continue;
    const claim = marker.value.claimedAt;
    if (claim !== undefined && now() - claim < CLAIM_TIMEOUT_MS) continue;
    const mine: DeadHostRecord = { ...marker.value, claimedBy: deps.host, claimedAt: now() };
    if (!(await store.compareAndSwap(marker.key, JSON.stringify(mine), marker.modRevision))) continue;
    const endpoints = await deps.driver.forgetHost(h);
    const pools = await deps.ipam.poolsOf(h);
    for (const poolId of pools) await deps.ipam.releaseHostFromPool(poolId, h);
    const now2 = await getJson<DeadHostRecord>(store, marker.key);
    if (now2 && now2.value.claimedBy === deps.host) await store.delete(marker.key, now2.modRevision);
    log.warn({ deadHost: h, endpoints: endpoints.length, pools }, 'released the records of a dead host');
    released.push(h);
  }
  return released;
}

/** Hosts that own records: endpoints, Docker networks or pool shares. */
async function hostsWithRecords(deps: DeadHostDeps): Promise<Set<string>> {
  const { store, keys } = deps;
  const hosts = new Set<string>();
  for (const e of await listJson<EndpointRecord>(store, keys.endpoints())) hosts.add(e.value.host);
  for (const d of await listJson<DockerNetworkRecord>(store, keys.dockerNetworks())) {
    hosts.add(d.key.slice(keys.dockerNetworks().length).split('/')[0]);
  }
  return hosts;
}

/** Runs sweeps every `everyMs` until stopped. */
export function startDeadHostSweeper(deps: DeadHostDeps, everyMs: number): { stop(): void } {
  let stopped = false;
  const timer = setInterval(() => {
    if (stopped) return;
    sweepDeadHosts(deps).catch((err: unknown) => deps.log.warn({ err }, 'dead-host sweep failed'));
  }, everyMs);
  timer.unref();
  return {
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
