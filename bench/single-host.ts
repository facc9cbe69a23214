// Single-host figures for vxnet, side by side with Docker's own bridge driver, in one run on one
// simulated host (test/helpers/hosts.ts: own netns, mount namespace and dockerd):
//   1. `docker run --rm --network NET vxt-busybox:local sh -c true`, vxnet vs bridge, interleaved
//   2. `docker network create` + `docker network rm` pairs, vxnet vs bridge, interleaved
//   3. the plugin's own latency per call, on its Unix socket (as dockerd calls it), for a whole
//      network/container lifecycle, on an otherwise empty network and on one with a resident endpoint
//   4. the driver's memory (VmRSS) at start and after the runs
// Prints a text table and a Markdown table and writes bench/results/single-host-<docker version>.json.
// A benchmark, not a test: nothing here asserts a time.
//
//   npm run build && node dist/bench/single-host.js [--docker 20|26] [--runs N] [--containers M] …
//   npm run bench -- --docker 26
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Host, DockerVersion, ExecResult } from '../test/helpers/hosts';
import { describeFailure, upHost, downHost, underlayDown, REPO_ROOT } from '../test/helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../test/helpers/image';
import { Driver, startDriver, socketFromOutside, MAIN_JS } from '../test/helpers/vxnet-in-host';
import { summarize, rounded, paired, textTable, markdownTable, fmt, Summary } from './lib/stats';
import { PluginClient, dockerId } from './lib/plugin-client';
import { readLoggedCalls, callsBetween, LoggedCall, logTail } from './lib/driver-log';
import { log, sleep, nowMs, round1, intArg, eachFlag, dockerArg, preflight, runWithCleanup } from './lib/runner';
import { memoryOf, MemoryKb, dockerVersions, machineInfo, sourceRevision, resultHeader } from './lib/machine';

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  docker: DockerVersion;
  runs: number;
  warmup: number;
  pairs: number;
  containers: number;
  perNetwork: number;
  hostName: string;
  hostIp: string;
  out: string | null;
}

const HOSTS: Record<DockerVersion, { name: string; ip: string }> = {
  '20': { name: 'vxt-b1', ip: '172.31.254.101' },
  '26': { name: 'vxt-b2', ip: '172.31.254.102' },
};

const USAGE = `Usage: node dist/bench/single-host.js [options]     (build first: npm run build)

  --docker 20|26       dockerd in the simulated host (default 20: Debian's 20.10; 26: 26.1)
  --runs N             measured docker runs per driver (default 20), after the warm-ups
  --warmup N           warm-up runs (and network pairs) per driver, not measured (default 2)
  --pairs N            measured network create+rm pairs per driver (default: --runs)
  --containers M       containers driven through the plugin socket per phase (default 200)
  --per-network K      containers per network in the socket phases (default 10)
  --host NAME          simulated host name (default vxt-b1 for 20, vxt-b2 for 26)
  --ip A.B.C.D         its underlay address (default 172.31.254.101 for 20, .102 for 26)
  --out FILE           results file (default bench/results/single-host-<docker version>.json)

Needs root. Creates the host, runs the built driver (dist/src/main.js) in it, removes it at the end.`;

function parseArgs(argv: string[]): Options {
  const o: Partial<Options> & { docker: DockerVersion } = { docker: '20' };
  eachFlag(argv, USAGE, (flag, next) => {
    switch (flag) {
      case '--docker': o.docker = dockerArg(next()); break;
      case '--runs': o.runs = intArg(flag, next(), 1); break;
      case '--warmup': o.warmup = intArg(flag, next(), 0); break;
      case '--pairs': o.pairs = intArg(flag, next(), 1); break;
      case '--containers': o.containers = intArg(flag, next(), 1); break;
      case '--per-network': o.perNetwork = intArg(flag, next(), 1); break;
      case '--host': o.hostName = next(); break;
      case '--ip': o.hostIp = next(); break;
      case '--out': o.out = next() ?? null; break;
      default:
        throw new Error(`unknown argument ${flag} (see --help)`);
    }
  });
  const runs = o.runs ?? 20;
  return {
    docker: o.docker,
    runs,
    warmup: o.warmup ?? 2,
    pairs: o.pairs ?? runs,
    containers: o.containers ?? 200,
    perNetwork: Math.min(o.perNetwork ?? 10, 200),
    hostName: o.hostName ?? HOSTS[o.docker].name,
    hostIp: o.hostIp ?? HOSTS[o.docker].ip,
    out: o.out ?? null,
  };
}

// ---------------------------------------------------------------------------------------------
// Helpers

type Kind = 'vxnet' | 'bridge';
const KINDS: Kind[] = ['vxnet', 'bridge'];

/** Both drivers each round; which goes first alternates, so drift and order effects cancel. */
function order(round: number): Kind[] {
  return round % 2 === 0 ? ['vxnet', 'bridge'] : ['bridge', 'vxnet'];
}

interface Timed {
  ms: number;
  /** epoch ms window, to find the driver's log lines of this operation */
  start: number;
  end: number;
}

async function timedDocker(host: Host, args: string[]): Promise<Timed> {
  const start = Date.now();
  const t0 = nowMs();
  const r: ExecResult = await host.docker(args, { timeoutMs: 120_000 });
  const ms = nowMs() - t0;
  const end = Date.now();
  if (r.code !== 0) throw describeFailure(`docker ${args.join(' ')}`, r);
  return { ms, start, end };
}

const NET = {
  run: { vxnet: 'vxt-bench-run-vx', bridge: 'vxt-bench-run-br' },
  runSubnet: { vxnet: '10.230.1.0/24', bridge: '10.230.2.0/24' },
  pair: { vxnet: 'vxt-bench-pair-vx', bridge: 'vxt-bench-pair-br' },
  pairSubnet: { vxnet: '10.230.3.0/24', bridge: '10.230.4.0/24' },
  /** plugin-socket phases; dockerd never hears of these networks */
  socketSubnet: { alone: '10.231.1.0/24', busy: '10.231.2.0/24' },
};

function createArgs(kind: Kind, name: string, subnet: string): string[] {
  return kind === 'vxnet'
    ? ['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', subnet, name]
    : ['network', 'create', '-d', 'bridge', '--subnet', subnet, name];
}

/** Sum of the driver's own time (ms) in the calls logged during each window; and the calls of the first. */
function pluginShare(calls: LoggedCall[], windows: Timed[]): { perOp: Summary; callsPerOp: Summary; firstSequence: string[] } {
  const sums: number[] = [];
  const counts: number[] = [];
  let firstSequence: string[] = [];
  windows.forEach((w, i) => {
    const inside = callsBetween(calls, w.start, w.end);
    sums.push(inside.reduce((a, c) => a + c.ms, 0));
    counts.push(inside.length);
    if (i === 0) firstSequence = inside.map((c) => c.call.replace(/^(NetworkDriver|IpamDriver)\./, ''));
  });
  return { perOp: rounded(summarize(sums)), callsPerOp: rounded(summarize(counts)), firstSequence };
}

// ---------------------------------------------------------------------------------------------
// 1 + 2: through dockerd

interface SideBySide {
  vxnet: Summary;
  bridge: Summary;
  /** vxnet median ÷ bridge median */
  ratioOfMedians: number;
  /** median over rounds of (vxnet ÷ bridge) of the same round */
  medianPairedRatio: number;
}

function sideBySide(vx: number[], br: number[]): SideBySide {
  const p = paired(vx, br, 1);
  return { vxnet: p.a, bridge: p.b, ratioOfMedians: p.ratioOfMedians, medianPairedRatio: p.medianPairedRatio };
}

async function benchDockerRun(host: Host, opts: Options, driver: Driver) {
  for (const kind of KINDS) await host.dockerOk(createArgs(kind, NET.run[kind], NET.runSubnet[kind]));
  const runArgs = (kind: Kind): string[] => ['run', '--rm', '--network', NET.run[kind], TEST_IMAGE, 'sh', '-c', 'true'];
  log(`docker run: ${opts.warmup} warm-up + ${opts.runs} measured runs per driver, interleaved`);
  for (let i = 0; i < opts.warmup; i++) for (const kind of order(i)) await timedDocker(host, runArgs(kind));
  const times: Record<Kind, Timed[]> = { vxnet: [], bridge: [] };
  for (let i = 0; i < opts.runs; i++) {
    for (const kind of order(i)) times[kind].push(await timedDocker(host, runArgs(kind)));
  }
  for (const kind of KINDS) await host.dockerOk(['network', 'rm', NET.run[kind]]);
  await sleep(200); // let the last log lines reach the file
  const share = pluginShare(readLoggedCalls(driver.logFile), times.vxnet);
  return {
    ...sideBySide(times.vxnet.map((t) => t.ms), times.bridge.map((t) => t.ms)),
    samplesMs: { vxnet: times.vxnet.map((t) => round1(t.ms)), bridge: times.bridge.map((t) => round1(t.ms)) },
    vxnetPluginMsPerRun: share.perOp,
    vxnetPluginCallsPerRun: share.callsPerOp,
    vxnetCallSequence: share.firstSequence,
  };
}

async function benchNetworkPairs(host: Host, opts: Options, driver: Driver) {
  log(`network create+rm: ${opts.warmup} warm-up + ${opts.pairs} measured pairs per driver, interleaved`);
  const pair = async (kind: Kind): Promise<{ create: Timed; rm: Timed }> => {
    const create = await timedDocker(host, createArgs(kind, NET.pair[kind], NET.pairSubnet[kind]));
    const rm = await timedDocker(host, ['network', 'rm', NET.pair[kind]]);
    return { create, rm };
  };
  for (let i = 0; i < opts.warmup; i++) for (const kind of order(i)) await pair(kind);
  const res: Record<Kind, Array<{ create: Timed; rm: Timed }>> = { vxnet: [], bridge: [] };
  for (let i = 0; i < opts.pairs; i++) for (const kind of order(i)) res[kind].push(await pair(kind));
  await sleep(200);
  const calls = readLoggedCalls(driver.logFile);
  const pick = (kind: Kind, f: (p: { create: Timed; rm: Timed }) => number): number[] => res[kind].map(f);
  return {
    pair: sideBySide(pick('vxnet', (p) => p.create.ms + p.rm.ms), pick('bridge', (p) => p.create.ms + p.rm.ms)),
    create: sideBySide(pick('vxnet', (p) => p.create.ms), pick('bridge', (p) => p.create.ms)),
    rm: sideBySide(pick('vxnet', (p) => p.rm.ms), pick('bridge', (p) => p.rm.ms)),
    vxnetPluginMsPerCreate: pluginShare(calls, res.vxnet.map((p) => p.create)).perOp,
    vxnetPluginMsPerRm: pluginShare(calls, res.vxnet.map((p) => p.rm)).perOp,
    vxnetCreateSequence: pluginShare(calls, res.vxnet.map((p) => p.create)).firstSequence,
    vxnetRmSequence: pluginShare(calls, res.vxnet.map((p) => p.rm)).firstSequence,
  };
}

// ---------------------------------------------------------------------------------------------
// 3: the plugin socket, called as dockerd calls it

const LOCAL_SPACE = 'vxnet-local';

interface CallRecord {
  label: string;
  method: string;
  ms: number;
}

/**
 * One client that remembers every call in order; `label` null = not measured (the resident
 * endpoint of the busy phase). Calls go one at a time, like dockerd's for one container.
 */
class Sequencer {
  readonly records: Array<CallRecord & { measured: boolean }> = [];
  private readonly client: PluginClient;
  /** best-effort undo for what is outstanding, newest first */
  private readonly undo: Array<() => Promise<unknown>> = [];

  constructor(socket: string) {
    this.client = new PluginClient(socket);
  }

  async call(method: string, body: unknown, label: string | null): Promise<Record<string, unknown>> {
    const r = await this.client.raw(method, body);
    if (r.status !== 200) throw new Error(`${method} answered HTTP ${r.status}: ${JSON.stringify(r.body)}`);
    this.records.push({ label: label ?? method, method, ms: r.ms, measured: label !== null });
    return r.body;
  }

  pushUndo(fn: () => Promise<unknown>): void {
    this.undo.push(fn);
  }

  popUndo(): void {
    this.undo.pop();
  }

  async rollback(): Promise<void> {
    while (this.undo.length > 0) {
      const fn = this.undo.pop()!;
      await fn().catch(() => undefined);
    }
  }

  close(): void {
    this.client.close();
  }
}

async function networkUp(s: Sequencer, subnet: string, measured: boolean) {
  const L = (l: string): string | null => (measured ? l : null);
  const pool = await s.call('IpamDriver.RequestPool', { AddressSpace: LOCAL_SPACE, Pool: subnet, SubPool: '', Options: {}, V6: false }, L('RequestPool'));
  const poolId = String(pool.PoolID);
  s.pushUndo(() => s.call('IpamDriver.ReleasePool', { PoolID: poolId }, null));
  const gw = await s.call(
    'IpamDriver.RequestAddress',
    { PoolID: poolId, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } },
    L('RequestAddress (gateway)'),
  );
  const gateway = String(gw.Address);
  s.pushUndo(() => s.call('IpamDriver.ReleaseAddress', { PoolID: poolId, Address: gateway.split('/')[0] }, null));
  const networkId = dockerId();
  await s.call(
    'NetworkDriver.CreateNetwork',
    {
      NetworkID: networkId,
      Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': {} },
      IPv4Data: [{ AddressSpace: LOCAL_SPACE, Pool: subnet, Gateway: gateway, AuxAddresses: null }],
      IPv6Data: [],
    },
    L('CreateNetwork'),
  );
  s.pushUndo(() => s.call('NetworkDriver.DeleteNetwork', { NetworkID: networkId }, null));
  return { networkId, poolId, gateway };
}

async function networkDown(s: Sequencer, n: { networkId: string; poolId: string; gateway: string }, measured: boolean) {
  const L = (l: string): string | null => (measured ? l : null);
  await s.call('NetworkDriver.DeleteNetwork', { NetworkID: n.networkId }, L('DeleteNetwork'));
  s.popUndo();
  await s.call('IpamDriver.ReleaseAddress', { PoolID: n.poolId, Address: n.gateway.split('/')[0] }, L('ReleaseAddress (gateway)'));
  s.popUndo();
  await s.call('IpamDriver.ReleasePool', { PoolID: n.poolId }, L('ReleasePool'));
  s.popUndo();
}

async function containerUp(s: Sequencer, n: { networkId: string; poolId: string }, measured: boolean, joinLabel = 'Join') {
  const L = (l: string): string | null => (measured ? l : null);
  const a = await s.call('IpamDriver.RequestAddress', { PoolID: n.poolId, Address: '', Options: null }, L('RequestAddress'));
  const address = String(a.Address);
  const ip = address.split('/')[0];
  s.pushUndo(() => s.call('IpamDriver.ReleaseAddress', { PoolID: n.poolId, Address: ip }, null));
  const endpointId = dockerId();
  const ids = { NetworkID: n.networkId, EndpointID: endpointId };
  await s.call('NetworkDriver.CreateEndpoint', { ...ids, Interface: { Address: address, AddressIPv6: '', MacAddress: '' }, Options: {} }, L('CreateEndpoint'));
  s.pushUndo(() => s.call('NetworkDriver.DeleteEndpoint', ids, null));
  await s.call('NetworkDriver.Join', { ...ids, SandboxKey: `/var/run/docker/netns/${endpointId.slice(0, 12)}`, Options: {} }, L(joinLabel));
  await s.call('NetworkDriver.ProgramExternalConnectivity', { ...ids, Options: {} }, L('ProgramExternalConnectivity'));
  await s.call('NetworkDriver.EndpointOperInfo', ids, L('EndpointOperInfo'));
  return { ids, ip };
}

async function containerDown(s: Sequencer, n: { poolId: string }, c: { ids: { NetworkID: string; EndpointID: string }; ip: string }, measured: boolean) {
  const L = (l: string): string | null => (measured ? l : null);
  await s.call('NetworkDriver.RevokeExternalConnectivity', c.ids, L('RevokeExternalConnectivity'));
  await s.call('NetworkDriver.Leave', c.ids, L('Leave'));
  await s.call('NetworkDriver.DeleteEndpoint', c.ids, L('DeleteEndpoint'));
  s.popUndo();
  await s.call('IpamDriver.ReleaseAddress', { PoolID: n.poolId, Address: c.ip }, L('ReleaseAddress'));
  s.popUndo();
}

/** The Join that finds no bridge and builds it (the first container of a network in phase "alone"). */
const JOIN_FIRST = 'Join (builds the bridge)';

/** Order of the rows in the per-call table: a network's life, then a container's. */
const CALL_ORDER = [
  'RequestPool', 'RequestAddress (gateway)', 'CreateNetwork',
  'RequestAddress', 'CreateEndpoint', JOIN_FIRST, 'Join', 'ProgramExternalConnectivity', 'EndpointOperInfo',
  'RevokeExternalConnectivity', 'Leave', 'DeleteEndpoint', 'ReleaseAddress',
  'DeleteNetwork', 'ReleaseAddress (gateway)', 'ReleasePool',
];

interface CallFigures {
  /** round trip on the socket, as the caller sees it */
  client: Summary;
  /** the driver's own time for the same calls (fastify elapsed time, from its log) */
  server: Summary | null;
}

interface SocketPhase {
  containers: number;
  networks: number;
  wallSeconds: number;
  perCall: Record<string, CallFigures>;
  /** client-side sum over one container's calls (RequestAddress … ReleaseAddress), per container */
  perContainerMs: Summary;
  /** driver VmRSS every 50 containers */
  rssTrace: Array<{ containers: number; rssKb: number }>;
}

/**
 * phase "alone": every container is the only endpoint on its network while it lives (as with
 *   `docker run --rm` in a loop on an idle network). The first Join of each network builds the
 *   bridge and its iptables rules (row JOIN_FIRST); DeleteEndpoint leaves them for the driver's
 *   teardown delay (VXNET_TEARDOWN_DELAY, default 5 s), so the next container, which follows
 *   at once, finds them; DeleteNetwork removes them.
 * phase "busy": a resident endpoint (not measured) keeps each network's bridge up, so Join and
 *   DeleteEndpoint only handle the container's veth.
 */
async function socketPhase(socket: string, driver: Driver, mode: 'alone' | 'busy', opts: Options): Promise<SocketPhase> {
  const rssTrace: Array<{ containers: number; rssKb: number }> = [{ containers: 0, rssKb: memoryOf(driver.proc.pid!).rssKb }];
  const s = new Sequencer(socket);
  const subnet = NET.socketSubnet[mode];
  const networks = Math.ceil(opts.containers / opts.perNetwork);
  const perContainer: number[] = [];
  const start = Date.now();
  const t0 = nowMs();
  try {
    let left = opts.containers;
    for (let k = 0; k < networks; k++) {
      const net = await networkUp(s, subnet, true);
      const resident = mode === 'busy' ? await containerUp(s, net, false) : null;
      for (let c = 0; c < opts.perNetwork && left > 0; c++, left--) {
        const first = s.records.length;
        const ct = await containerUp(s, net, true, mode === 'alone' && c === 0 ? JOIN_FIRST : 'Join');
        await containerDown(s, net, ct, true);
        perContainer.push(s.records.slice(first).reduce((a, r) => a + r.ms, 0));
        if (perContainer.length % 50 === 0) rssTrace.push({ containers: perContainer.length, rssKb: memoryOf(driver.proc.pid!).rssKb });
      }
      if (resident) await containerDown(s, net, resident, false);
      await networkDown(s, net, true);
    }
  } catch (err) {
    await s.rollback();
    throw err;
  } finally {
    s.close();
  }
  const wallSeconds = (nowMs() - t0) / 1000;
  const end = Date.now();
  await sleep(200);

  // Calls are strictly sequential: the i-th logged call of the window is the i-th call made.
  const logged = callsBetween(readLoggedCalls(driver.logFile), start, end);
  const aligned = logged.length === s.records.length && logged.every((l, i) => l.call === s.records[i].method);
  if (!aligned) log(`note: ${logged.length} logged calls vs ${s.records.length} made in phase ${mode}: driver-side times left out`);
  const byLabel = new Map<string, { client: number[]; server: number[] }>();
  s.records.forEach((r, i) => {
    if (!r.measured) return;
    let e = byLabel.get(r.label);
    if (!e) byLabel.set(r.label, (e = { client: [], server: [] }));
    e.client.push(r.ms);
    if (aligned) e.server.push(logged[i].ms);
  });
  const perCall: Record<string, CallFigures> = {};
  for (const label of [...CALL_ORDER, ...[...byLabel.keys()].filter((k) => !CALL_ORDER.includes(k))]) {
    const e = byLabel.get(label);
    if (!e) continue;
    perCall[label] = { client: rounded(summarize(e.client), 3), server: aligned ? rounded(summarize(e.server), 3) : null };
  }
  return {
    containers: opts.containers,
    networks,
    wallSeconds: round1(wallSeconds),
    perCall,
    perContainerMs: rounded(summarize(perContainer), 2),
    rssTrace,
  };
}

/**
 * What the driver's building blocks cost in this host, each run from a shell inside it (so every
 * figure includes one process start, as the driver's own iptables calls do): a bare process
 * start, one iptables call, and creating/deleting a veth pair and a bridge with `ip`.
 */
async function kernelProbes(host: Host): Promise<Record<string, Summary>> {
  const ops: Record<string, string> = {
    'process start (/bin/true)': '/bin/true',
    'iptables -w -S FORWARD': 'iptables -w -S FORWARD >/dev/null',
    'ip link add veth pair': 'ip link add vxt-pb0 type veth peer name vxt-pb1',
    'ip link del veth pair': 'ip link del vxt-pb0',
    'ip link add bridge': 'ip link add vxt-pbr type bridge',
    'ip link del bridge': 'ip link del vxt-pbr',
  };
  const names = Object.keys(ops);
  // One round = every op once, in order (add before del); 20 rounds.
  const body = names.map((n, i) => `s=$EPOCHREALTIME; ${ops[n]}; e=$EPOCHREALTIME; echo "${i} $s $e"`).join('; ');
  const out = await host.execOk(['bash', '-c', `set -e; for r in $(seq 20); do ${body}; done`]);
  const samples = new Map<number, number[]>();
  for (const line of out.split('\n')) {
    const [i, s, e] = line.trim().split(' ').map(Number);
    if (!Number.isFinite(e)) continue;
    (samples.get(i) ?? samples.set(i, []).get(i)!).push((e - s) * 1000);
  }
  const res: Record<string, Summary> = {};
  names.forEach((n, i) => (res[n] = rounded(summarize(samples.get(i) ?? []), 2)));
  return res;
}

/** vxnet links and rules left in the host (should be none once everything is torn down). */
async function leftovers(host: Host): Promise<{ links: string[]; rules: string[] }> {
  const links = (await host.execOk(['ip', '-o', 'link', 'show']))
    .split('\n')
    .map((l) => l.split(': ')[1]?.split('@')[0] ?? '')
    .filter((n) => n.startsWith('vx'));
  const rules = (await host.execOk(['iptables', '-w', '-S'])).split('\n').filter((l) => /vxb-\d/.test(l));
  return { links, rules };
}

// ---------------------------------------------------------------------------------------------
// Output

function mb(kb: number): string {
  return (kb / 1024).toFixed(1);
}

type Results = Awaited<ReturnType<typeof runBench>>;

function dockerRows(r: Results): Array<Array<string | number>> {
  const row = (name: string, s: SideBySide): Array<string | number> => [
    name, s.vxnet.n, fmt(s.vxnet.p50, 0), fmt(s.vxnet.p90, 0), fmt(s.bridge.p50, 0), fmt(s.bridge.p90, 0), s.ratioOfMedians.toFixed(2), s.medianPairedRatio.toFixed(2),
  ];
  return [
    row('docker run --rm … sh -c true', r.dockerRun),
    row('docker network create', r.networkPairs.create),
    row('docker network rm', r.networkPairs.rm),
    row('network create + rm (pair)', r.networkPairs.pair),
  ];
}
const DOCKER_HEADER = ['operation (ms)', 'n', 'vxnet p50', 'vxnet p90', 'bridge p50', 'bridge p90', 'vxnet÷bridge', 'paired ratio p50'];

function callRows(r: Results): Array<Array<string | number>> {
  const labels = [...new Set([...Object.keys(r.socket.alone.perCall), ...Object.keys(r.socket.busy.perCall)])];
  return labels.map((label) => {
    const a = r.socket.alone.perCall[label];
    const b = r.socket.busy.perCall[label];
    return [
      label,
      a ? a.client.n : '-',
      a ? fmt(a.client.p50, 2) : '-',
      a ? fmt(a.client.p99, 2) : '-',
      a?.server ? fmt(a.server.p50, 2) : '-',
      b ? fmt(b.client.p50, 2) : '-',
      b ? fmt(b.client.p99, 2) : '-',
      b?.server ? fmt(b.server.p50, 2) : '-',
    ];
  });
}
const CALL_HEADER = ['call (ms)', 'n', 'alone p50', 'alone p99', 'alone driver p50', 'busy p50', 'busy p99', 'busy driver p50'];

function probeRows(r: Results): Array<Array<string | number>> {
  return Object.entries(r.probesMs).map(([k, v]) => [k, v.n, fmt(v.p50, 2), fmt(v.p90, 2)]);
}
const PROBE_HEADER = ['building block in the host (ms, from a shell)', 'n', 'p50', 'p90'];

function memoryRows(r: Results): Array<Array<string | number>> {
  const m = r.memory;
  return [
    ['VmRSS (MB)', mb(m.atStart.rssKb), mb(m.afterDockerRuns.rssKb), mb(m.afterAlonePhase.rssKb), mb(m.afterSocketCalls.rssKb), mb(m.afterSocketCalls.peakKb)],
  ];
}
const MEMORY_HEADER = ['driver memory', 'at start', 'after docker runs', 'after socket phase "alone"', 'after socket phase "busy"', 'peak (VmHWM)'];

function report(r: Results): string {
  const m = r.machine;
  const lines: string[] = [];
  lines.push(`vxnet single host — dockerd ${r.docker.server} (API ${r.docker.apiVersion}), ${m.nproc} CPUs, kernel ${m.kernel}, ${r.timestamp}`);
  lines.push('');
  lines.push(textTable(DOCKER_HEADER, dockerRows(r)));
  lines.push(
    `  driver time inside one vxnet docker run: p50 ${fmt(r.dockerRun.vxnetPluginMsPerRun.p50, 1)} ms over ${r.dockerRun.vxnetPluginCallsPerRun.p50} calls` +
      ` (${r.dockerRun.vxnetCallSequence.join(' → ')})`,
  );
  lines.push(`  driver time inside network create: p50 ${fmt(r.networkPairs.vxnetPluginMsPerCreate.p50, 1)} ms; rm: p50 ${fmt(r.networkPairs.vxnetPluginMsPerRm.p50, 1)} ms`);
  lines.push('');
  lines.push(`plugin socket, ${r.socket.alone.containers} containers per phase, ${r.options.perNetwork} per network` +
    ` (alone: each container alone on its network; busy: next to a resident endpoint)`);
  lines.push(textTable(CALL_HEADER, callRows(r)));
  lines.push(`  per container (RequestAddress … ReleaseAddress): alone p50 ${fmt(r.socket.alone.perContainerMs.p50, 2)} ms, busy p50 ${fmt(r.socket.busy.perContainerMs.p50, 2)} ms`);
  lines.push('');
  lines.push(textTable(PROBE_HEADER, probeRows(r)));
  lines.push('');
  lines.push(textTable(MEMORY_HEADER, memoryRows(r)));
  if (r.leftovers.links.length || r.leftovers.rules.length) {
    lines.push('', `LEFTOVERS after the socket phases: links ${r.leftovers.links.join(', ') || '-'}; rules ${r.leftovers.rules.length}`);
  }
  return lines.join('\n');
}

function markdown(r: Results): string {
  const m = r.machine;
  return [
    `**dockerd ${r.docker.server}** (API ${r.docker.apiVersion}), ${m.nproc} vCPU, kernel ${m.kernel}, node ${m.node}, vxnet ${r.source.commit?.slice(0, 7) ?? '?'}${r.source.dirty ? '+dirty' : ''}, ${r.timestamp}`,
    '',
    markdownTable(DOCKER_HEADER, dockerRows(r)),
    '',
    `Driver time inside one vxnet \`docker run\`: p50 ${fmt(r.dockerRun.vxnetPluginMsPerRun.p50, 1)} ms (${r.dockerRun.vxnetPluginCallsPerRun.p50} calls).`,
    '',
    markdownTable(CALL_HEADER, callRows(r)),
    '',
    markdownTable(PROBE_HEADER, probeRows(r)),
    '',
    markdownTable(MEMORY_HEADER, memoryRows(r)),
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Main

async function runBench(opts: Options, host: Host, driverBox: { driver: Driver | null }) {
  const started = Date.now();
  const machine = await machineInfo();
  const source = await sourceRevision(REPO_ROOT);
  const docker = await dockerVersions(host);
  log(`dockerd ${docker.server} in ${host.name}; image`);
  await ensureTestImage(host);
  const driver = await startDriver(host, { VXNET_LOG_LEVEL: 'info' });
  driverBox.driver = driver;
  const pid = driver.proc.pid!;
  const atStart: MemoryKb = memoryOf(pid);
  log(`driver pid ${pid}, VmRSS ${mb(atStart.rssKb)} MB`);

  const dockerRun = await benchDockerRun(host, opts, driver);
  const networkPairs = await benchNetworkPairs(host, opts, driver);
  const afterDockerRuns = memoryOf(pid);

  const socket = socketFromOutside(host);
  log(`plugin socket: ${opts.containers} containers, alone on their network`);
  const alone = await socketPhase(socket, driver, 'alone', opts);
  const afterAlonePhase = memoryOf(pid);
  log(`plugin socket: ${opts.containers} containers, next to a resident endpoint`);
  const busy = await socketPhase(socket, driver, 'busy', opts);
  const afterSocketCalls = memoryOf(pid);
  const left = await leftovers(host);
  log('kernel probes');
  const probesMs = await kernelProbes(host);

  return {
    ...resultHeader('single-host', started, opts, machine),
    docker,
    source,
    host: { name: host.name, ip: host.ip, dockerVersion: host.dockerVersion },
    driver: { main: path.relative(REPO_ROOT, MAIN_JS), logLevel: 'info', store: 'embedded', teardownDelay: process.env.VXNET_TEARDOWN_DELAY ?? 'default (5 s)' },
    units: 'ms unless named otherwise; percentiles interpolate between closest ranks',
    dockerRun,
    networkPairs,
    socket: { alone, busy },
    probesMs,
    memory: { atStart, afterDockerRuns, afterAlonePhase, afterSocketCalls },
    leftovers: left,
  };
}

async function main(): Promise<number> {
  const pre = preflight(parseArgs, USAGE, 'single-host bench', MAIN_JS);
  if ('code' in pre) return pre.code;
  const opts = pre.opts;
  log(`host ${opts.hostName} (${opts.hostIp}) with dockerd ${opts.docker}`);
  const driverBox: { driver: Driver | null } = { driver: null };
  const underlayExisted = fs.existsSync('/run/netns/vxt-ul');
  return runWithCleanup(
    async () => {
      const host = await upHost(opts.hostName, opts.hostIp, { docker: opts.docker });
      let results: Results;
      try {
        results = await runBench(opts, host, driverBox);
      } catch (err) {
        const tail = driverBox.driver ? logTail(driverBox.driver.logFile, 20) : '';
        if (tail) process.stderr.write(`last driver log lines:\n${tail}\n`);
        throw err;
      }
      const file = opts.out ?? path.join(REPO_ROOT, 'bench', 'results', `single-host-${results.docker.server.replace(/[^A-Za-z0-9.+_-]/g, '_')}.json`);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
      process.stdout.write(`\n${report(results)}\n\n--- Markdown ---\n\n${markdown(results)}\n\n`);
      log(`results: ${path.relative(process.cwd(), file) || file}`);
      return 0;
    },
    async () => {
      await driverBox.driver?.stop().catch(() => undefined);
      await downHost(opts.hostName).catch((e: unknown) => log(`downHost ${opts.hostName}: ${(e as Error).message}`));
      // The underlay namespace goes only if this run made it, and only when no host is left on it.
      if (!underlayExisted) await underlayDown().catch(() => undefined);
    },
  );
}

void main().then((code) => process.exit(code));
