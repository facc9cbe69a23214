// Driver memory with many endpoint records across hosts (issue 13's memory row), shared by
// bench:alloc and bench:memory: --endpoints records (RequestAddress + CreateEndpoint, spread over
// the hosts) on one network that has a joined container on every host, so every driver programs
// a peer entry for each remote endpoint. Each driver's VmRSS, its peer passes ("peer entries
// synced" in its log) while the records arrive, and a restart of the last host's driver with
// every record in the store.
import type { Host } from '../../test/helpers/hosts';
import type { Driver } from '../../test/helpers/vxnet-in-host';
import { socketFromOutside } from '../../test/helpers/vxnet-in-host';
import { createFakeNetwork, startFakeContainer, FakeNetwork } from '../../test/helpers/fake-container';
import { PluginClient, dockerId } from './plugin-client';
import { readLogRecords } from './driver-log';
import { memoryOf, MemoryKb, cpuSecondsWithChildrenOf } from './machine';
import { summarize, rounded, Summary, fmt } from './stats';
import { log, sleep, nowMs, round1 } from './runner';

export const ENDPOINT_POOL = '10.242.0.0/16';
/** The fake containers' namespaces (one per host), for cleanup. */
export const ENDPOINT_CONTAINERS = ['vxt-ac1', 'vxt-ac2', 'vxt-ac3'];

export interface EndpointMemory {
  endpoints: number;
  perHost: number[];
  /** endpoints whose RequestAddress or CreateEndpoint failed, per host (not retried) */
  failedPerHost: number[];
  seconds: number;
  /**
   * peak: VmHWM before any heap snapshot (the burst itself); peakWithSnapshot: after them (writing
   * a snapshot costs ~80 MB that the process keeps, so this one is the bench's, not the driver's).
   * anonAfterEndpoints: RssAnon (the rest of VmRSS is node's binary mapped from disk, ~42 MB).
   * settled: VmRSS again after SETTLE_MS idle.
   */
  rssMb: { atStart: number[]; afterNetwork: number[]; afterEndpoints: number[]; anonAfterEndpoints: number[]; settled: number[]; peak: number[]; peakWithSnapshot: number[] };
  /** the driver's own view after the records (Vxnet.Memory, MB), null for a build without the route */
  v8Mb: Array<{ heapUsed: number; heapTotal: number; external: number; arrayBuffers: number } | null>;
  /** threads of each driver process after the records (node's own + the link reaper's when started) */
  threads: number[];
  /** live heap per driver after the records (MB; empty when not measured) */
  heapMb: number[];
  /** every "peer entries synced" pass while the records arrived, per host (ms) */
  peerSyncMs: Summary[];
  /** peer entries each driver had programmed at the end (its last pass) */
  peersAtEnd: number[];
  /**
   * CPU seconds each driver used from the burst's start until its peer entries were in place
   * (its own and its waited-for children's: tc, nft …).
   */
  cpuSeconds: number[];
  /**
   * `--fast-path redirect` ("redirect entries synced" in the log; zero passes without it): its
   * passes that changed a block while the records arrived (ms each), and the remote entries of
   * its last one.
   */
  redirect: Array<{ passes: number; ms: Summary; remoteAtEnd: number | null }>;
  /** the last host's driver restarted with every record in the store: until its socket answered, and its RSS then */
  restart: { host: string; readyMs: number; rssMb: number; firstSyncMs: number | null; peers: number | null };
}

export interface EndpointMemoryEnv {
  hosts: Host[];
  /** one running driver per host; the last one is replaced by its restart */
  drivers: Driver[];
  endpoints: number;
  /** starts the last host's driver again (same build, same store prefix) */
  restart(host: Host): Promise<Driver>;
}

const mb = (kb: number): number => Math.round(kb / 102.4) / 10;
/** Idle time before the second RSS sample after the records. */
const SETTLE_MS = 30_000;

async function ok(client: PluginClient, method: string, body: unknown): Promise<Record<string, unknown>> {
  const r = await client.raw(method, body);
  if (r.status !== 200 || r.body.Err || r.body.Error) throw new Error(`${method}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Runs `total` tasks with `width` in flight; resolves when all are done. */
export async function inFlight(total: number, width: number, task: (k: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, total) }, async () => {
    while (next < total) await task(next++);
  }));
}

/** heapMb(h): the live heap of host h's driver (optional: only bench:memory takes snapshots). */
export async function endpointMemory(env: EndpointMemoryEnv, heapMb?: (h: number) => Promise<number>): Promise<EndpointMemory> {
  const { hosts, drivers } = env;
  log(`endpoint memory: ${env.endpoints} endpoint records over ${hosts.length} hosts on ${ENDPOINT_POOL}`);
  const rss = (): MemoryKb[] => drivers.map((d) => memoryOf(d.proc.pid!));
  const atStart = rss();
  const socks = hosts.map(socketFromOutside);
  const nets: FakeNetwork[] = [];
  for (const s of socks) nets.push(await createFakeNetwork(s, ENDPOINT_POOL));
  for (let i = 0; i < hosts.length; i++) await startFakeContainer(hosts[i].name, socks[i], nets[i], ENDPOINT_CONTAINERS[i]);
  await sleep(1000);
  const afterNetwork = rss();
  const clients = socks.map((s) => new PluginClient(s, 8));
  const perHost = hosts.map((_, h) => Math.floor(env.endpoints / hosts.length) + (h < env.endpoints % hosts.length ? 1 : 0));
  const failed = hosts.map(() => 0);
  const windowStart = Date.now();
  const cpu = (): number[] => drivers.map((d) => cpuSecondsWithChildrenOf(d.proc.pid!));
  const cpu0 = cpu();
  const t0 = nowMs();
  try {
    await Promise.all(clients.map((c, h) =>
      inFlight(perHost[h], 8, async () => {
        // A refused call (e.g. a store deadline missed by a driver short of CPU) is counted and
        // the burst goes on: the memory of the rest is still worth having, side by side.
        try {
          const a = String((await ok(c, 'IpamDriver.RequestAddress', { PoolID: nets[h].poolId, Address: '', Options: null })).Address);
          await ok(c, 'NetworkDriver.CreateEndpoint', { NetworkID: nets[h].networkId, EndpointID: dockerId(), Interface: { Address: a, AddressIPv6: '', MacAddress: '' }, Options: {} });
        } catch (err) {
          if (failed[h]++ === 0) log(`  host ${hosts[h].name}: ${(err as Error).message.slice(0, 300)}`);
        }
      }),
    ));
  } finally {
    for (const c of clients) c.close();
  }
  const seconds = (nowMs() - t0) / 1000;
  // Every driver programs one FDB entry per remote endpoint plus one per remote VTEP: wait until
  // each one's last pass says so (bounded), then let the heap settle.
  const made = perHost.map((n, h) => n - failed[h]);
  const remote = (h: number): number => made.reduce((a, n) => a + n, 0) - made[h] + 1 + (hosts.length - 1);
  const lastPeers = (h: number): number | null => {
    const recs = readLogRecords(drivers[h].logFile, 'peer entries synced');
    return recs.length > 0 ? Number(recs[recs.length - 1].rec.peers) : null;
  };
  for (let i = 0; i < 120 && hosts.some((_, h) => (lastPeers(h) ?? 0) < remote(h) - 1); i++) await sleep(1000);
  await sleep(3000);
  const afterEndpoints = rss();
  const cpuSeconds = cpu().map((c, h) => Math.round((c - cpu0[h]) * 100) / 100);
  const redirect = drivers.map((d) => {
    const recs = readLogRecords(d.logFile, 'redirect entries synced').filter((r) => r.time >= windowStart);
    return { passes: recs.length, ms: rounded(summarize(recs.map((r) => Number(r.rec.ms))), 1), remoteAtEnd: recs.length > 0 ? Number(recs[recs.length - 1].rec.remote) : null };
  });
  // V8 gives heap back only once allocation has slowed down for a while (its memory reducer
  // starts 8 s after that): the same drivers again, idle, before any heap snapshot.
  await sleep(SETTLE_MS);
  const settled = rss();
  const v8Mb = await Promise.all(socks.map(async (s) => {
    const c = new PluginClient(s, 1);
    try {
      const r = await c.raw('Vxnet.Memory', {});
      const m = r.body.Memory as Record<string, number> | undefined;
      if (r.status !== 200 || !m) return null;
      const inMb = (b: number): number => Math.round(b / 104857.6) / 10;
      return { heapUsed: inMb(m.heapUsed), heapTotal: inMb(m.heapTotal), external: inMb(m.external), arrayBuffers: inMb(m.arrayBuffers) };
    } finally {
      c.close();
    }
  }));
  const heaps: number[] = [];
  if (heapMb) for (let h = 0; h < hosts.length; h++) heaps.push(await heapMb(h));
  const peerSyncMs = drivers.map((d) =>
    rounded(summarize(readLogRecords(d.logFile, 'peer entries synced').filter((r) => r.time >= windowStart).map((r) => Number(r.rec.ms))), 1),
  );
  const peersAtEnd = hosts.map((_, h) => lastPeers(h) ?? 0);
  const peak = heapMb ? rss() : afterEndpoints;

  // A restart of the last host's driver with every record in the store (its container stays).
  const last = hosts.length - 1;
  await drivers[last].stop();
  const r0 = nowMs();
  const restarted = await env.restart(hosts[last]);
  const readyMs = nowMs() - r0;
  drivers[last] = restarted;
  for (let i = 0; i < 60 && readLogRecords(restarted.logFile, 'peer entries synced').length === 0; i++) await sleep(500);
  await sleep(3000);
  const firstSync = readLogRecords(restarted.logFile, 'peer entries synced')[0];
  const result: EndpointMemory = {
    endpoints: env.endpoints,
    perHost,
    failedPerHost: failed,
    seconds: round1(seconds),
    rssMb: {
      atStart: atStart.map((m) => mb(m.rssKb)),
      afterNetwork: afterNetwork.map((m) => mb(m.rssKb)),
      afterEndpoints: afterEndpoints.map((m) => mb(m.rssKb)),
      anonAfterEndpoints: afterEndpoints.map((m) => mb(m.anonKb)),
      settled: settled.map((m) => mb(m.rssKb)),
      peak: afterEndpoints.map((m) => mb(m.peakKb)),
      peakWithSnapshot: peak.map((m) => mb(m.peakKb)),
    },
    v8Mb,
    threads: afterEndpoints.map((m) => m.threads),
    heapMb: heaps,
    peerSyncMs,
    peersAtEnd,
    cpuSeconds,
    redirect,
    restart: {
      host: hosts[last].name,
      readyMs: Math.round(readyMs),
      rssMb: mb(memoryOf(restarted.proc.pid!).rssKb),
      firstSyncMs: firstSync ? Number(firstSync.rec.ms) : null,
      peers: firstSync ? Number(firstSync.rec.peers) : null,
    },
  };
  log(`  RSS after ${env.endpoints} endpoints: ${result.rssMb.afterEndpoints.join(' / ')} MB; peer passes p50 ${peerSyncMs.map((s) => fmt(s.p50, 1)).join(' / ')} ms; CPU ${cpuSeconds.join(' / ')} s`);
  if (redirect.some((r) => r.passes > 0)) log(`  redirect: ${redirect.map((r) => `${r.passes} passes p50 ${fmt(r.ms.p50, 1)} ms, ${r.remoteAtEnd} remote`).join(' / ')}`);
  return result;
}
