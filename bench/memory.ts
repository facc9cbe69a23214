// Driver memory (issue 12's last item, issue 13's memory row), without dockerd, in one run:
//   1. networks: one simulated host over etcd gets --networks networks, each with one endpoint
//      joined (RequestPool, gateway, CreateNetwork, RequestAddress, CreateEndpoint, Join: the
//      calls dockerd makes for `docker network create` + `docker run`; the bridge, VXLAN device
//      and veth are real). VmRSS every 100 networks (its least-squares slope: bytes per network);
//      VmRSS at rest (20 s without calls) at 0, 10, 1/4, 1/2, 3/4 and all of the networks; and
//      the live V8 heap (a heap snapshot, taken after a full GC) of a fresh driver, of one that
//      made 10 networks (warm code and caches) and after the last network: which constructors grew.
//   2. endpoints: --endpoints endpoint records over 3 hosts on one network with a joined
//      container on every host, so each driver programs a peer entry for every remote one
//      (bench/lib/endpoint-memory.ts, shared with bench:alloc): RSS, live heap, peer passes.
//   3. churn (--churn-cycles): what a CI runner does all day. Each cycle creates
//      --churn-networks networks with a joined endpoint, then takes every one down in dockerd's
//      order (RevokeExternalConnectivity, Leave, DeleteEndpoint, ReleaseAddress; ReleaseAddress of
//      the gateway, ReleasePool, DeleteNetwork). After each cycle: RSS, V8 heap, the host's vxnet
//      links and the store's keys; the live heap of a fresh driver and after the last cycle.
// Every part runs for the built driver and, with --baseline, for another build (main's dist/),
// one after the other on fresh hosts and a fresh etcd prefix: the same work, side by side.
// A benchmark, not a test: nothing is asserted.
//
//   npm run build && node dist/bench/memory.js [--baseline /tmp/base/dist/src/main.js] …
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Host, upHost, downHost, underlayDown, run, REPO_ROOT } from '../test/helpers/hosts';
import { DRIVER_NODE_OPTIONS } from '../src/node-options';
import { Driver, startDriver, socketFromOutside, MAIN_JS } from '../test/helpers/vxnet-in-host';
import { HostEtcd, startEtcdInHost } from '../test/helpers/etcd-in-host';
import { etcdDriverEnv } from './lib/etcd-driver';
import { PluginClient, dockerId } from './lib/plugin-client';
import { logTail } from './lib/driver-log';
import { memoryOf, machineInfo, sourceRevision, resultHeader, cpuSecondsWithChildrenOf } from './lib/machine';
import { HeapSummary, heapGrowth, readHeapSnapshot } from './lib/heap-snapshot';
import { EndpointMemory, endpointMemory, ENDPOINT_CONTAINERS } from './lib/endpoint-memory';
import { etcdKeys } from '../test/helpers/leftovers';
import { vxLinks } from '../test/helpers/docker-inspect';
import { textTable, markdownTable } from './lib/stats';
import { log, sleep, intArg, eachFlag, preflight, runWithCleanup } from './lib/runner';

interface Options {
  networks: number;
  endpoints: number;
  baseline: string | null;
  keepSnapshots: string | null;
  /** extra environment for every driver (e.g. MALLOC_ARENA_MAX=2 to try an allocator setting) */
  driverEnv: Record<string, string>;
  /** for the baseline's drivers only, over driverEnv (e.g. the same build without an option) */
  baselineDriverEnv: Record<string, string>;
  /** node flags for every driver, before main.js (V8 flags NODE_OPTIONS refuses, e.g. --heap-growing-percent=N) */
  nodeArgs: string[];
  /** node flags for the baseline's drivers only, after nodeArgs (a flag given twice: the last wins) */
  baselineNodeArgs: string[];
  churnCycles: number;
  churnNetworks: number;
  out: string;
}

const USAGE = `Usage: node dist/bench/memory.js [options]     (build first: npm run build)

  --networks N        networks with one joined endpoint each, on one host (default 1000; 0 skips)
  --endpoints N       endpoint records over 3 hosts in part 2 (default 10000; 0 skips it)
  --churn-cycles N    part 3: N cycles of creating and removing networks (default 0: skipped)
  --churn-networks N  networks per churn cycle, each with a joined endpoint (default 100)
  --baseline FILE     another build's main.js (e.g. main's dist/src/main.js), run the same way
  --keep-snapshots DIR  keep the .heapsnapshot files there (to open in DevTools)
  --driver-env K=V    extra environment for every driver (repeatable)
  --baseline-driver-env K=V  for the baseline's drivers only, over --driver-env; with --baseline
                      dist/src/main.js: one build with and without an option, e.g.
                      --driver-env VXNET_FAST_PATH=redirect --baseline-driver-env VXNET_FAST_PATH=on
  --node-arg FLAG     a node/V8 flag for every driver, e.g. --node-arg=--optimize-for-size (repeatable)
  --baseline-node-arg FLAG  one for the baseline's drivers only, e.g. --max-semi-space-size=16 to run
                      a build of before src/node-options.ts as it ran (repeatable)
  --out FILE          results file (default bench/results/memory.json)

Needs root. Creates hosts vxt-b40 (etcd) and vxt-b41..43 (172.31.254.140-143) without dockerd,
runs the driver in them, removes everything at the end.`;

function setEnv(env: Record<string, string>, flag: string, v = ''): void {
  const eq = v.indexOf('=');
  if (eq < 1) throw new Error(`${flag} needs NAME=VALUE, got ${v}`);
  env[v.slice(0, eq)] = v.slice(eq + 1);
}

function parseArgs(argv: string[]): Options {
  const o: Options = { networks: 1000, endpoints: 10000, baseline: null, keepSnapshots: null, driverEnv: {}, baselineDriverEnv: {}, nodeArgs: [], baselineNodeArgs: [], churnCycles: 0, churnNetworks: 100, out: path.join(REPO_ROOT, 'bench/results/memory.json') };
  eachFlag(argv, USAGE, (flag, next) => {
    switch (flag) {
      case '--networks': o.networks = intArg(flag, next(), 0); break;
      case '--endpoints': o.endpoints = intArg(flag, next(), 0); break;
      case '--baseline': o.baseline = path.resolve(next() ?? ''); break;
      case '--keep-snapshots': o.keepSnapshots = path.resolve(next() ?? ''); break;
      case '--driver-env': setEnv(o.driverEnv, flag, next()); break;
      case '--baseline-driver-env': setEnv(o.baselineDriverEnv, flag, next()); break;
      case '--node-arg': o.nodeArgs.push(next() ?? ''); break;
      case '--baseline-node-arg': o.baselineNodeArgs.push(next() ?? ''); break;
      case '--churn-cycles': o.churnCycles = intArg(flag, next(), 0); break;
      case '--churn-networks': o.churnNetworks = intArg(flag, next(), 1); break;
      case '--out': o.out = path.resolve(next() ?? o.out); break;
      default: throw new Error(`unknown argument ${flag} (see --help)`);
    }
  });
  for (const [flag, n] of [['--networks', o.networks], ['--churn-networks', o.churnNetworks]] as const) {
    if (n > 4000) throw new Error(`${flag}: at most 4000 (/24s of 10.160.0.0/12, VNIs 256-4095)`);
  }
  if (o.endpoints > 65000) throw new Error('--endpoints: at most 65000 fit in the /16');
  if (o.baseline && !fs.existsSync(o.baseline)) throw new Error(`--baseline ${o.baseline} does not exist`);
  return o;
}

const ETCD_HOST = { name: 'vxt-b40', ip: '172.31.254.140' };
const HOSTS = [
  { name: 'vxt-b41', ip: '172.31.254.141' },
  { name: 'vxt-b42', ip: '172.31.254.142' },
  { name: 'vxt-b43', ip: '172.31.254.143' },
];
const SPACE = 'vxnet-local';

type Build = 'new' | 'baseline';

function mainOf(opts: Options, build: Build): string {
  return build === 'new' ? MAIN_JS : (opts.baseline as string);
}

function driverEnvOf(opts: Options, build: Build): Record<string, string> {
  return build === 'new' ? opts.driverEnv : { ...opts.driverEnv, ...opts.baselineDriverEnv };
}

function nodeArgsOf(opts: Options, build: Build): string[] {
  return build === 'new' ? opts.nodeArgs : [...opts.nodeArgs, ...opts.baselineNodeArgs];
}

interface Env {
  etcdHost: Host | null;
  etcd: HostEtcd | null;
  hosts: Host[];
  drivers: Driver[];
}

const mb = (bytes: number): number => Math.round(bytes / 104857.6) / 10;

/** The subnet of network i: consecutive /24s from 10.160.0.0. */
function subnetOf(i: number): string {
  const n = (10 << 24) + (160 << 16) + i * 256;
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.0/24`;
}

async function ok(client: PluginClient, method: string, body: unknown): Promise<Record<string, unknown>> {
  const r = await client.raw(method, body);
  if (r.status !== 200 || r.body.Err || r.body.Error) throw new Error(`${method}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Fresh hosts (no devices of an earlier build left) and a driver per host for `build`. */
async function upHosts(env: Env, count: number): Promise<void> {
  for (const h of env.hosts.splice(0)) await downHost(h.name);
  for (const h of HOSTS.slice(0, count)) {
    const host = await upHost(h.name, h.ip, { docker: null });
    await host.execOk(['sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=1']);
    await host.execOk(['iptables', '-w', '-P', 'FORWARD', 'DROP']);
    env.hosts.push(host);
  }
}

function snapshotDir(host: Host): string {
  return path.join(host.stateDir, 'heap');
}

async function startBuildDrivers(env: Env, mainJs: string, prefix: string, extra: Record<string, string>, nodeArgs: string[]): Promise<Driver[]> {
  const drivers: Driver[] = [];
  for (const h of env.hosts) {
    fs.rmSync(path.join(h.stateDir, 'vxnet-data'), { recursive: true, force: true });
    fs.rmSync(snapshotDir(h), { recursive: true, force: true });
    fs.mkdirSync(snapshotDir(h), { recursive: true });
    drivers.push(await startDriver(h, {
      ...etcdDriverEnv((env.etcd as HostEtcd).endpoint, prefix),
      // SIGUSR2 writes a heap snapshot (after a full GC) into the host's heap/ folder.
      ...extra,
      // After the launchers' own flags; --driver-env NODE_OPTIONS=… adds to these instead of
      // replacing them (of a V8 flag given twice, the last wins).
      NODE_OPTIONS: `${DRIVER_NODE_OPTIONS} --heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${snapshotDir(h)} ${extra.NODE_OPTIONS ?? ''}`.trim(),
    }, mainJs, nodeArgs));
  }
  env.drivers = drivers;
  return drivers;
}

async function stopDrivers(env: Env): Promise<void> {
  for (const d of env.drivers.splice(0)) await d.stop();
}

/**
 * Live heap of a driver: SIGUSR2, then wait for the file; the snapshot is written on the
 * driver's only thread, so once it answers a call the file is complete.
 */
async function heapOf(host: Host, driver: Driver, client: PluginClient, keep: string | null, label: string): Promise<HeapSummary> {
  const dir = snapshotDir(host);
  const before = new Set(fs.readdirSync(dir));
  process.kill(driver.proc.pid as number, 'SIGUSR2');
  let file: string | undefined;
  for (let i = 0; i < 600 && !file; i++) {
    await sleep(100);
    file = fs.readdirSync(dir).find((f) => f.endsWith('.heapsnapshot') && !before.has(f));
  }
  if (!file) throw new Error(`no heap snapshot from ${host.name} within 60 s`);
  await ok(client, 'NetworkDriver.GetCapabilities', {});
  const full = path.join(dir, file);
  const summary = readHeapSnapshot(full);
  if (keep) {
    fs.mkdirSync(keep, { recursive: true });
    fs.copyFileSync(full, path.join(keep, `${label}.heapsnapshot`));
  }
  fs.rmSync(full);
  return summary;
}

// ---------------------------------------------------------------------------------------------
// 1. networks

interface NetworkSample {
  networks: number;
  rssMb: number;
  /** of rssMb: anonymous memory (V8 heap, malloc, thread stacks) and the process's thread count */
  anonMb: number;
  threads: number;
  /** the driver's own view (Vxnet.Memory), MB; null for a build without that route */
  v8: { heapUsed: number; heapTotal: number; external: number; arrayBuffers: number; spaces?: Record<string, { size: number; used: number }> } | null;
}

async function memorySample(driver: Driver, client: PluginClient): Promise<Omit<NetworkSample, 'networks'>> {
  const m = memoryOf(driver.proc.pid as number);
  return { rssMb: mb(m.rssKb * 1024), anonMb: mb(m.anonKb * 1024), threads: m.threads, v8: await processMemoryMb(client) };
}

/** Vxnet.Memory of a driver in MB, or null when the build does not have the route. */
async function processMemoryMb(client: PluginClient): Promise<NetworkSample['v8']> {
  const r = await client.raw('Vxnet.Memory', {});
  const m = r.body.Memory as Record<string, number> | undefined;
  if (r.status !== 200 || !m) return null;
  const spaces = (r.body.Memory as { spaces?: Record<string, { size: number; used: number }> }).spaces;
  return {
    heapUsed: mb(m.heapUsed), heapTotal: mb(m.heapTotal), external: mb(m.external), arrayBuffers: mb(m.arrayBuffers),
    ...(spaces ? { spaces: Object.fromEntries(Object.entries(spaces).map(([k, v]) => [k, { size: mb(v.size), used: mb(v.used) }])) } : {}),
  };
}

/** Idle time after the last network before the at-rest sample (the driver trims its heap once
 * idle for ~6 s after a burst: src/server/memory-trim.ts). */
const REST_MS = 20_000;

/**
 * Networks a driver has made before its heap counts as warm: the first calls compile code and
 * fill caches (~4 MB of (code) alone) that any use of the driver pays once, not per network.
 */
const WARM_NETWORKS = 10;

interface NetworksResult {
  build: Build;
  networks: number;
  seconds: number;
  /** the driver's CPU seconds (with the tc, nft … it ran) over the calls and rests */
  cpuSeconds: number;
  samples: NetworkSample[];
  /** least-squares slope over the samples, KB per network */
  rssKbPerNetwork: number;
  /** at 0, WARM_NETWORKS, ¼, ½, ¾ and all of the networks, after REST_MS without calls: what the driver holds at rest */
  atRest: NetworkSample[];
  /** least-squares slope over atRest, KB per network */
  restKbPerNetwork: number;
  /** networks made before the warm heap snapshot: WARM_NETWORKS, or all of them when fewer */
  warm: number;
  /** the same over the samples from `warm` networks on (what one more network costs a warm driver) */
  restKbPerNetworkWarm: number;
  /** live heap (MB) of a fresh driver, of one after WARM_NETWORKS networks, and after the last network */
  heapMb: { atStart: number; atWarm: number; atEnd: number };
  /** (atEnd - atWarm) / (networks - WARM_NETWORKS): what each network adds once the code is warm */
  heapKbPerNetwork: number;
  /** constructor groups that grew most from WARM_NETWORKS networks to the last */
  heapGrowth: Array<{ name: string; kb: number; count: number }>;
}

function slope(points: Array<[number, number]>): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((a, p) => a + p[0], 0) / n;
  const my = points.reduce((a, p) => a + p[1], 0) / n;
  const num = points.reduce((a, p) => a + (p[0] - mx) * (p[1] - my), 0);
  const den = points.reduce((a, p) => a + (p[0] - mx) ** 2, 0);
  return den === 0 ? 0 : num / den;
}

interface JoinedNetwork {
  poolId: string;
  gateway: string;
  address: string;
  ids: { NetworkID: string; EndpointID: string };
}

/** Network i (subnetOf(i - 1)) with one joined endpoint: the calls of `network create` + `docker run`. */
async function createJoined(client: PluginClient, i: number): Promise<JoinedNetwork> {
  const pool = await ok(client, 'IpamDriver.RequestPool', { AddressSpace: SPACE, Pool: subnetOf(i - 1), SubPool: '', Options: {}, V6: false });
  const poolId = String(pool.PoolID);
  const gw = await ok(client, 'IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } });
  const networkId = dockerId();
  await ok(client, 'NetworkDriver.CreateNetwork', {
    NetworkID: networkId,
    Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': {} },
    IPv4Data: [{ AddressSpace: SPACE, Pool: pool.Pool, Gateway: gw.Address }],
    IPv6Data: [],
  });
  const addr = await ok(client, 'IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: null });
  const ids = { NetworkID: networkId, EndpointID: dockerId() };
  await ok(client, 'NetworkDriver.CreateEndpoint', { ...ids, Interface: { Address: addr.Address, AddressIPv6: '', MacAddress: '' }, Options: {} });
  // The veth stays in the host (no sandbox is needed for what the driver holds).
  await ok(client, 'NetworkDriver.Join', { ...ids, SandboxKey: `/run/netns/vxm-${i}`, Options: {} });
  await ok(client, 'NetworkDriver.ProgramExternalConnectivity', { ...ids, Options: {} });
  return { poolId, gateway: String(gw.Address), address: String(addr.Address), ids };
}

/** `docker rm -f` then `docker network rm`, in the order dockerd calls them (PROTOCOL.md §4). */
async function removeJoined(client: PluginClient, n: JoinedNetwork): Promise<void> {
  await ok(client, 'NetworkDriver.RevokeExternalConnectivity', n.ids);
  await ok(client, 'NetworkDriver.Leave', n.ids);
  await ok(client, 'NetworkDriver.DeleteEndpoint', n.ids);
  await ok(client, 'IpamDriver.ReleaseAddress', { PoolID: n.poolId, Address: n.address.split('/')[0] });
  await ok(client, 'IpamDriver.ReleaseAddress', { PoolID: n.poolId, Address: n.gateway.split('/')[0] });
  await ok(client, 'IpamDriver.ReleasePool', { PoolID: n.poolId });
  await ok(client, 'NetworkDriver.DeleteNetwork', { NetworkID: n.ids.NetworkID });
}

/**
 * Live heap of a fresh driver, in a process of its own: writing a heap snapshot takes ~80 MB of
 * RSS that the process keeps (110 MB measured after a churn cycle), so an RSS curve is taken
 * without any, and compared with this and one snapshot at its end.
 */
async function freshHeap(env: Env, opts: Options, build: Build, prefix: string, label: string, networks = 0): Promise<HeapSummary> {
  const fresh = (await startBuildDrivers(env, mainOf(opts, build), prefix, driverEnvOf(opts, build), nodeArgsOf(opts, build)))[0];
  const client = new PluginClient(socketFromOutside(env.hosts[0]), 1);
  try {
    await sleep(1000);
    const made: JoinedNetwork[] = [];
    for (let i = 1; i <= networks; i++) made.push(await createJoined(client, i));
    const heap = await heapOf(env.hosts[0], fresh, client, opts.keepSnapshots, label);
    // Its networks go again: the measured run creates the same subnets.
    for (const n of made) await removeJoined(client, n);
    return heap;
  } finally {
    client.close();
    await stopDrivers(env);
  }
}

/** The live heap at the end of a part, then its drivers stop. */
async function lastHeap(env: Env, driver: Driver, client: PluginClient, opts: Options, label: string): Promise<HeapSummary> {
  const heap = await heapOf(env.hosts[0], driver, client, opts.keepSnapshots, label).finally(() => client.close());
  await stopDrivers(env);
  return heap;
}

/** The constructor groups that grew most between two snapshots, in KB. */
function growthRows(from: HeapSummary, to: HeapSummary): Array<{ name: string; kb: number; count: number }> {
  return heapGrowth(from, to, 12).map((g) => ({ name: g.name, kb: Math.round(g.bytes / 1024), count: g.count }));
}

async function networksPart(env: Env, opts: Options, build: Build): Promise<NetworksResult> {
  const mainJs = mainOf(opts, build);
  await upHosts(env, 1);
  const host = env.hosts[0];
  const heap0 = await freshHeap(env, opts, build, `/vxm-net0-${build}/`, `${build}-networks-0`);
  const warm = Math.min(WARM_NETWORKS, opts.networks);
  const heapWarm = await freshHeap(env, opts, build, `/vxm-netw-${build}/`, `${build}-networks-${warm}`, warm);
  const [driver] = await startBuildDrivers(env, mainJs, `/vxm-net-${build}/`, driverEnvOf(opts, build), nodeArgsOf(opts, build));
  const client = new PluginClient(socketFromOutside(host), 1);
  const samples: NetworkSample[] = [];
  const atRest: NetworkSample[] = [];
  const restAt = new Set([warm, ...[1, 2, 3, 4].map((k) => Math.round((opts.networks * k) / 4))]);
  let restedMs = 0;
  const measure = async (n: number, into: NetworkSample[]): Promise<NetworkSample> => {
    const s: NetworkSample = { networks: n, ...(await memorySample(driver, client)) };
    into.push(s);
    return s;
  };
  const rest = async (n: number): Promise<void> => {
    await sleep(REST_MS);
    restedMs += REST_MS;
    const s = await measure(n, atRest);
    log(`  ${build}: ${n} networks at rest, RSS ${s.rssMb} MB${s.v8 ? `, V8 heap used/total ${s.v8.heapUsed}/${s.v8.heapTotal} MB` : ''}`);
  };
  const sample = async (n: number): Promise<void> => {
    const s = await measure(n, samples);
    log(`  ${build}: ${n} networks, RSS ${s.rssMb} MB (anonymous ${s.anonMb} MB, ${s.threads} threads)${s.v8 ? `, V8 heap used/total ${s.v8.heapUsed}/${s.v8.heapTotal} MB, external ${s.v8.external} MB` : ''}`);
  };
  const t0 = Date.now();
  const cpu0 = cpuSecondsWithChildrenOf(driver.proc.pid!);
  try {
    await sleep(1000);
    await sample(0);
    await rest(0);
    for (let i = 1; i <= opts.networks; i++) {
      if (i % 10 === 0) log(`    ${i}`);
      await createJoined(client, i);
      if (i % 100 === 0 || i === 10 || i === 50 || i === opts.networks) await sample(i);
      if (restAt.has(i) && i < opts.networks) await rest(i);
    }
    await sleep(2000);
    await sample(opts.networks);
    await rest(opts.networks);
  } catch (err) {
    process.stderr.write(`after ${samples[samples.length - 1].networks} networks; last log lines of ${driver.logFile}:\n${logTail(driver.logFile, 10)}\n`);
    throw err;
  }
  const seconds = (Date.now() - t0 - restedMs) / 1000;
  const cpuSeconds = Math.round((cpuSecondsWithChildrenOf(driver.proc.pid!) - cpu0) * 10) / 10;
  const heapN = await lastHeap(env, driver, client, opts, `${build}-networks-${opts.networks}`);
  return {
    build,
    networks: opts.networks,
    seconds: Math.round(seconds),
    cpuSeconds,
    samples,
    rssKbPerNetwork: Math.round(slope(samples.map((s) => [s.networks, s.rssMb * 1024]))),
    atRest,
    restKbPerNetwork: Math.round(slope(atRest.map((s) => [s.networks, s.rssMb * 1024]))),
    warm,
    restKbPerNetworkWarm: Math.round(slope(atRest.filter((s) => s.networks >= warm).map((s) => [s.networks, s.rssMb * 1024]))),
    heapMb: { atStart: mb(heap0.totalBytes), atWarm: mb(heapWarm.totalBytes), atEnd: mb(heapN.totalBytes) },
    heapKbPerNetwork: Math.round(((heapN.totalBytes - heapWarm.totalBytes) / 1024 / Math.max(1, opts.networks - warm)) * 10) / 10,
    heapGrowth: growthRows(heapWarm, heapN),
  };
}

// ---------------------------------------------------------------------------------------------
// 2. endpoints

interface EndpointsResult extends EndpointMemory {
  build: Build;
}

async function endpointsPart(env: Env, opts: Options, build: Build): Promise<EndpointsResult> {
  const mainJs = mainOf(opts, build);
  await upHosts(env, 3);
  const prefix = `/vxm-ep-${build}/`;
  const drivers = await startBuildDrivers(env, mainJs, prefix, driverEnvOf(opts, build), nodeArgsOf(opts, build));
  const clients = env.hosts.map((h) => new PluginClient(socketFromOutside(h), 1));
  try {
    const r = await endpointMemory(
      { hosts: env.hosts, drivers, endpoints: opts.endpoints, restart: (h) => startDriver(h, { ...etcdDriverEnv((env.etcd as HostEtcd).endpoint, prefix), ...driverEnvOf(opts, build) }, mainJs, nodeArgsOf(opts, build)) },
      async (h) => mb((await heapOf(env.hosts[h], drivers[h], clients[h], opts.keepSnapshots, `${build}-endpoints-${env.hosts[h].name}`)).totalBytes),
    );
    return { build, ...r };
  } finally {
    for (const c of clients) c.close();
    await stopDrivers(env);
    for (const ns of ENDPOINT_CONTAINERS) if (fs.existsSync(`/run/netns/${ns}`)) await run('ip', ['netns', 'del', ns]);
  }
}

// ---------------------------------------------------------------------------------------------
// 3. churn

interface ChurnSample extends Omit<NetworkSample, 'networks'> {
  cycle: number;
  /** what is left after the cycle: the host's vxnet links and the store's keys under the prefix */
  links: number;
  storeKeys: number;
}

interface ChurnResult {
  build: Build;
  cycles: number;
  networksPerCycle: number;
  seconds: number;
  samples: ChurnSample[];
  /** least-squares slope of RSS over cycles 2..N (cycle 1 warms the process up), KB per cycle */
  rssKbPerCycle: number;
  /** live heap (MB) of a fresh driver and after the last cycle */
  heapMb: { fresh: number; afterLast: number };
  heapGrowth: Array<{ name: string; kb: number; count: number }>;
}

async function churnPart(env: Env, opts: Options, build: Build): Promise<ChurnResult> {
  const mainJs = mainOf(opts, build);
  await upHosts(env, 1);
  const host = env.hosts[0];
  const prefix = `/vxm-churn-${build}/`;
  const heap0 = await freshHeap(env, opts, build, `/vxm-churn0-${build}/`, `${build}-churn-0`);
  const [driver] = await startBuildDrivers(env, mainJs, prefix, driverEnvOf(opts, build), nodeArgsOf(opts, build));
  const client = new PluginClient(socketFromOutside(host), 1);
  const samples: ChurnSample[] = [];
  const sample = async (cycle: number): Promise<void> => {
    const links = (await vxLinks(host)).length;
    const storeKeys = (await etcdKeys(host, (env.etcd as HostEtcd).endpoint, prefix)).length;
    const s: ChurnSample = { cycle, ...(await memorySample(driver, client)), links, storeKeys };
    samples.push(s);
    log(`  ${build}: after cycle ${cycle}, RSS ${s.rssMb} MB${s.v8 ? `, V8 heap used/total ${s.v8.heapUsed}/${s.v8.heapTotal} MB` : ''}, ${links} vxnet links, ${storeKeys} store keys`);
  };
  const t0 = Date.now();
  try {
    await sleep(1000);
    await sample(0);
    for (let c = 1; c <= opts.churnCycles; c++) {
      const made: JoinedNetwork[] = [];
      for (let i = 1; i <= opts.churnNetworks; i++) made.push(await createJoined(client, i));
      for (const n of made) await removeJoined(client, n);
      await sleep(1000);
      await sample(c);
    }
  } catch (err) {
    process.stderr.write(`in churn cycle ${samples.length}; last log lines of ${driver.logFile}:\n${logTail(driver.logFile, 10)}\n`);
    throw err;
  }
  const seconds = (Date.now() - t0) / 1000;
  const heapLast = await lastHeap(env, driver, client, opts, `${build}-churn-${opts.churnCycles}`);
  return {
    build,
    cycles: opts.churnCycles,
    networksPerCycle: opts.churnNetworks,
    seconds: Math.round(seconds),
    samples,
    rssKbPerCycle: Math.round(slope(samples.filter((x) => x.cycle > 1).map((x) => [x.cycle, x.rssMb * 1024]))),
    heapMb: { fresh: mb(heap0.totalBytes), afterLast: mb(heapLast.totalBytes) },
    heapGrowth: growthRows(heap0, heapLast),
  };
}

// ---------------------------------------------------------------------------------------------
// Output

type Results = Awaited<ReturnType<typeof runBench>>;

function report(r: Results, md: boolean): string {
  const lines: string[] = [];
  const t = (title: string, header: string[], rows: Array<Array<string | number>>): void => {
    lines.push('', md ? `*${title}*` : title, '', md ? markdownTable(header, rows) : textTable(header, rows));
  };
  if (r.networks.length > 0) {
    const ns = r.networks[0].samples.map((s) => s.networks);
    t(
      `1. ${r.options.networks} networks with one joined endpoint each, one host over etcd: VmRSS MB`,
      ['networks', ...r.networks.map((n) => n.build)],
      ns.map((n, k) => [n, ...r.networks.map((x) => x.samples[k]?.rssMb ?? '-')]),
    );
    const rs = r.networks[0].atRest.map((s) => s.networks);
    t(
      `at rest (${REST_MS / 1000} s without calls): VmRSS MB, V8 heap used / total MB`,
      ['networks', ...r.networks.map((n) => n.build)],
      rs.map((n, k) => [n, ...r.networks.map((x) => { const s = x.atRest[k]; return s ? `${s.rssMb}${s.v8 ? ` (${s.v8.heapUsed} / ${s.v8.heapTotal})` : ''}` : '-'; })]),
    );
    const warm = r.networks[0].warm;
    t('per network', ['build', 'RSS KB/network (slope)', 'at rest: RSS KB/network (slope)', `at rest from ${warm} networks (slope)`, `live heap MB start → ${warm} networks → end`, `live heap KB/network (from ${warm})`, 'seconds', 'CPU s'], r.networks.map((n) => [
      n.build, n.rssKbPerNetwork, n.restKbPerNetwork, n.restKbPerNetworkWarm, `${n.heapMb.atStart} → ${n.heapMb.atWarm} → ${n.heapMb.atEnd}`, n.heapKbPerNetwork, n.seconds, n.cpuSeconds,
    ]));
    for (const n of r.networks) {
      t(`heap growth by constructor, ${n.build}, ${n.warm} networks → last`, ['group', 'KB', 'objects'], n.heapGrowth.map((g) => [g.name, g.kb, g.count]));
    }
  }
  if (r.endpoints.length > 0) {
    t(
      `2. ${r.options.endpoints} endpoint records over 3 hosts, one network with a container on every host`,
      ['build', 'RSS start MB', `RSS with endpoints`, 'of it anon', 'RSS 30 s later', 'V8 heap used / total, external', 'live heap MB', 'peak MB', 'threads', 'peer passes', 'pass p50 / max ms', 'peers at end', 'CPU s (with children)', 'redirect passes, p50 / max ms, remote at end', 'failed calls', 'seconds'],
      r.endpoints.map((e) => [
        e.build, e.rssMb.atStart.join(' / '), e.rssMb.afterEndpoints.join(' / '), e.rssMb.anonAfterEndpoints.join(' / '), (e.rssMb.settled ?? []).join(' / '),
        e.v8Mb.map((v) => (v ? `${v.heapUsed}/${v.heapTotal}, ${v.external}` : '-')).join(' · '),
        e.heapMb.join(' / '), e.rssMb.peak.join(' / '), e.threads.join(' / '),
        e.peerSyncMs.map((s) => s.n).join(' / '), e.peerSyncMs.map((s) => `${s.p50} / ${s.max}`).join(', '), e.peersAtEnd.join(' / '),
        (e.cpuSeconds ?? []).join(' / '), (e.redirect ?? []).map((x) => (x.passes > 0 ? `${x.passes}, ${x.ms.p50} / ${x.ms.max}, ${x.remoteAtEnd}` : '-')).join(' · '),
        e.failedPerHost.join(' / '), e.seconds,
      ]),
    );
  }
  if (r.churn.length > 0) {
    const cs = r.churn[0].samples.map((x) => x.cycle);
    t(
      `3. churn: ${r.options.churnCycles} cycles of ${r.options.churnNetworks} networks created (one joined endpoint each) and removed, one host over etcd: VmRSS MB / vxnet links / store keys after each cycle`,
      ['cycle', ...r.churn.map((c) => c.build)],
      cs.map((c, k) => [c, ...r.churn.map((x) => { const v = x.samples[k]; return v ? `${v.rssMb} / ${v.links} / ${v.storeKeys}` : '-'; })]),
    );
    t('per cycle', ['build', 'RSS KB/cycle (slope, cycles 2..N)', 'live heap MB fresh → after the last cycle', 'seconds'], r.churn.map((c) => [c.build, c.rssKbPerCycle, `${c.heapMb.fresh} → ${c.heapMb.afterLast}`, c.seconds]));
    for (const c of r.churn) {
      t(`heap growth by constructor, ${c.build}, fresh driver → after the last cycle`, ['group', 'KB', 'objects'], c.heapGrowth.map((g) => [g.name, g.kb, g.count]));
    }
  }
  return lines.join('\n');
}

async function runBench(opts: Options, env: Env) {
  const started = Date.now();
  const machine = await machineInfo();
  const source = await sourceRevision(REPO_ROOT);
  env.etcdHost = await upHost(ETCD_HOST.name, ETCD_HOST.ip, { docker: null });
  env.etcd = await startEtcdInHost(env.etcdHost);
  const builds: Build[] = opts.baseline ? ['baseline', 'new'] : ['new'];
  const networks: NetworksResult[] = [];
  const endpoints: EndpointsResult[] = [];
  if (opts.networks > 0) for (const b of builds) {
    log(`1. ${opts.networks} networks, ${b} build`);
    networks.push(await networksPart(env, opts, b));
  }
  if (opts.endpoints > 0) for (const b of builds) {
    log(`2. ${opts.endpoints} endpoints, ${b} build`);
    endpoints.push(await endpointsPart(env, opts, b));
  }
  const churn: ChurnResult[] = [];
  if (opts.churnCycles > 0) for (const b of builds) {
    log(`3. churn: ${opts.churnCycles} cycles of ${opts.churnNetworks} networks, ${b} build`);
    churn.push(await churnPart(env, opts, b));
  }
  return {
    ...resultHeader('memory', started, opts, machine),
    source,
    driver: { main: path.relative(REPO_ROOT, MAIN_JS), baseline: opts.baseline, logLevel: 'info', store: 'etcd' },
    networks,
    endpoints,
    churn,
  };
}

async function main(): Promise<number> {
  const pre = preflight(parseArgs, USAGE, 'memory bench', MAIN_JS);
  if ('code' in pre) return pre.code;
  const opts = pre.opts;
  const underlayExisted = fs.existsSync('/run/netns/vxt-ul');
  const env: Env = { etcdHost: null, etcd: null, hosts: [], drivers: [] };
  return runWithCleanup(
    async () => {
      const results = await runBench(opts, env);
      fs.mkdirSync(path.dirname(opts.out), { recursive: true });
      fs.writeFileSync(opts.out, `${JSON.stringify(results, null, 2)}\n`);
      process.stdout.write(`\n${report(results, false)}\n\n--- Markdown ---\n\n${report(results, true)}\n\n`);
      log(`results: ${path.relative(process.cwd(), opts.out) || opts.out}`);
      return 0;
    },
    async () => {
      await stopDrivers(env).catch(() => undefined);
      for (const ns of ENDPOINT_CONTAINERS) if (fs.existsSync(`/run/netns/${ns}`)) await run('ip', ['netns', 'del', ns]);
      for (const h of [...HOSTS, ETCD_HOST]) await downHost(h.name).catch((err: unknown) => log(`downHost ${h.name}: ${(err as Error).message}`));
      if (!underlayExisted) await underlayDown();
    },
  );
}

void main().then((code) => process.exit(code));
