// Multi-host figures for vxnet, in one run on three simulated hosts without dockerd (network
// namespaces on a private underlay, as in test/e2e/multi-host-ns.test.ts), an etcd in a fourth,
// and the built driver in each host (VXNET_STORE=etcd, VTEP on eth0). Every host is set up as
// dockerd leaves a real one: FORWARD policy DROP, bridged frames through iptables.
//   a. datapath between two fake containers on host1 and host2 through vxnet, side by side with two
//      namespaces joined by a hand-made bridge + VXLAN on the same two hosts (the kernel's
//      limit): ping RTT and single-stream TCP, interleaved rounds, ratios vxnet ÷ raw
//   b. peer convergence: an endpoint created and joined on host1 → its FDB (and neighbour) entry
//      on host2, seen by monitors started beforehand in host2; and its removal
//   c. IPAM: concurrent RequestAddress on one /16 from all three drivers; distinct count; release
//   d. each driver's memory
// Prints text and Markdown tables and writes bench/results/multi-host.json.
// A benchmark, not a test: nothing asserts a time (only that no address was handed out twice).
//
//   npm run bench:multi [-- --rounds N --pings N --endpoints N --allocs N …]
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { spawn, ChildProcess } from 'node:child_process';
import { Host, upHost, downHost, underlayDown, run, describeFailure, REPO_ROOT } from '../test/helpers/hosts';
import { RawSpec, rawOverlayUp, rawOverlayDown } from './lib/raw-vxlan';
import { Driver, startDriver, socketFromOutside, MAIN_JS } from '../test/helpers/vxnet-in-host';
import { etcdDriverEnv } from './lib/etcd-driver';
import { HostEtcd, startEtcdInHost } from '../test/helpers/etcd-in-host';
import { FakeContainer, FakeNetwork, createFakeNetwork, removeFakeNetwork, startFakeContainer, stopFakeContainer } from '../test/helpers/fake-container';
import { Keys } from '../src/store/json';
import { PluginClient, dockerId } from './lib/plugin-client';
import { readLogRecords, readLoggedCalls, logTail } from './lib/driver-log';
import { memoryOf, MemoryKb, machineInfo, sourceRevision, resultHeader, cpuSecondsOf } from './lib/machine';
import { summarize, rounded, paired, Paired, Summary, textTable, markdownTable, fmt } from './lib/stats';
import { TcpTool, Stream, pickTcpTool, startTcpServer, tcpStream } from './lib/tcp-stream';
import { log, sleep, nowMs, epochMs, intArg, eachFlag, preflight, runWithCleanup, round1 } from './lib/runner';

// ---------------------------------------------------------------------------------------------
// Options and fixed names

interface Options {
  rounds: number;
  pings: number;
  iperfSeconds: number;
  endpoints: number;
  allocs: number;
  concurrency: number;
  out: string;
}

const USAGE = `Usage: node dist/bench/multi-host.js [options]     (build first: npm run build)

  --rounds N         interleaved rounds of part a, vxnet and raw each (default 4)
  --pings N          pings per round and side, 10 ms apart (default 200)
  --seconds N        TCP stream length per round and side, after 1 s not counted (default 3)
  --endpoints N      endpoints created on host1 in part b (default 150)
  --allocs N         RequestAddress calls per host in part c (default 1000)
  --concurrency N    calls in flight per host in part c (default 16)
  --out FILE         results file (default bench/results/multi-host.json)

Needs root. Creates hosts vxt-b10 (etcd) and vxt-b11..13 (172.31.254.110-113) without dockerd,
runs the built driver (dist/src/main.js) in each, removes everything at the end.`;

function parseArgs(argv: string[]): Options {
  const o: Options = { rounds: 4, pings: 200, iperfSeconds: 3, endpoints: 150, allocs: 1000, concurrency: 16, out: path.join(REPO_ROOT, 'bench/results/multi-host.json') };
  eachFlag(argv, USAGE, (flag, next) => {
    switch (flag) {
      case '--rounds': o.rounds = intArg(flag, next(), 1); break;
      case '--pings': o.pings = intArg(flag, next(), 10); break;
      case '--seconds': o.iperfSeconds = intArg(flag, next(), 1); break;
      case '--endpoints': o.endpoints = intArg(flag, next(), 1); break;
      case '--allocs': o.allocs = intArg(flag, next(), 1); break;
      case '--concurrency': o.concurrency = intArg(flag, next(), 1); break;
      case '--out': o.out = path.resolve(next() ?? o.out); break;
      default: throw new Error(`unknown argument ${flag} (see --help)`);
    }
  });
  if (o.allocs * 3 > 65000) throw new Error('--allocs: at most 21666 per host fit in the /16');
  return o;
}

const ETCD_HOST = { name: 'vxt-b10', ip: '172.31.254.110' };
const HOSTS = [
  { name: 'vxt-b11', ip: '172.31.254.111' },
  { name: 'vxt-b12', ip: '172.31.254.112' },
  { name: 'vxt-b13', ip: '172.31.254.113' },
];
const ETCD_PREFIX = '/vxnet/v1/';
/** vxnet's network of parts a and b; its fake containers on host1 and host2 */
const SUBNET = '10.232.0.0/24';
const CONTAINERS = ['vxt-bc1', 'vxt-bc2'];
/** The hand-made overlay: same two hosts, own VNI (outside vxnet's 256-4095), same UDP port. */
/** The hand-made reference (bench/lib/raw-vxlan.ts): bridge + VXLAN in the hosts' own namespaces. */
const RAW_SPEC: RawSpec = { placement: 'host', vni: 10042, tag: 'mr', subnet24: '10.233.0', mtu: 1450 };
const RAW = {
  ...RAW_SPEC,
  netns: ['vxt-mrc1', 'vxt-mrc2'],
  ips: ['10.233.0.1', '10.233.0.2'],
};
const IPAM_POOL = '10.240.0.0/16';
const TCP_PORT = 5201;

type Kind = 'vxnet' | 'raw';
/** Both sides each round; which goes first alternates (A B, B A, …), so drift and order effects cancel. */
function order(round: number): Kind[] {
  return round % 2 === 0 ? ['vxnet', 'raw'] : ['raw', 'vxnet'];
}

// ---------------------------------------------------------------------------------------------
// Small process helpers (everything here runs in namespaces this bench created)

async function sh(cmd: string, args: string[], timeoutMs = 30_000): Promise<string> {
  const r = await run(cmd, args, { timeoutMs });
  if (r.code !== 0) throw describeFailure(`${cmd} ${args.join(' ')}`, r);
  return r.stdout;
}

function inNetns(ns: string, cmd: string[], timeoutMs = 30_000): Promise<string> {
  return sh('ip', ['netns', 'exec', ns, ...cmd], timeoutMs);
}

/** Long-running helpers (monitors, TCP servers): killed by pid at the end. */
const children: ChildProcess[] = [];

function spawnInNetns(ns: string, cmd: string[]): ChildProcess {
  // `ip netns exec` execs the command: the child's pid is the command's own.
  const child = spawn('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr!.on('data', () => undefined);
  children.push(child);
  return child;
}

function killChildren(): void {
  for (const c of children.splice(0)) {
    if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(c.pid, 'SIGTERM');
      } catch {
        /* gone */
      }
    }
  }
}

function netnsExists(ns: string): boolean {
  return fs.existsSync(`/run/netns/${ns}`);
}

async function deleteNetns(ns: string): Promise<void> {
  if (netnsExists(ns)) await run('ip', ['netns', 'del', ns]);
}

// ---------------------------------------------------------------------------------------------
// Setup

interface Env {
  etcdHost: Host;
  etcd: HostEtcd;
  hosts: Host[];
  drivers: Driver[];
  socks: string[];
  memoryAtStart: MemoryKb[];
  nets: FakeNetwork[];
  containers: FakeContainer[];
  tcpTool: TcpTool;
}

async function setUp(env: Partial<Env>): Promise<Env> {
  env.tcpTool = await pickTcpTool();
  log(`hosts ${ETCD_HOST.name} (etcd), ${HOSTS.map((h) => h.name).join(', ')}`);
  env.etcdHost = await upHost(ETCD_HOST.name, ETCD_HOST.ip, { docker: null });
  env.etcd = await startEtcdInHost(env.etcdHost);
  env.hosts = [];
  env.drivers = [];
  env.socks = [];
  env.memoryAtStart = [];
  for (const h of HOSTS) {
    const host = await upHost(h.name, h.ip, { docker: null });
    env.hosts.push(host);
    // What dockerd does to every host: bridged frames through iptables, FORWARD dropped.
    await host.execOk(['sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=1']);
    await host.execOk(['iptables', '-w', '-P', 'FORWARD', 'DROP']);
    const driver = await startDriver(host, etcdDriverEnv(env.etcd.endpoint, ETCD_PREFIX));
    env.drivers.push(driver);
    env.socks.push(socketFromOutside(host));
    env.memoryAtStart.push(memoryOf(driver.proc.pid!));
  }
  env.nets = [];
  for (const s of env.socks) env.nets.push(await createFakeNetwork(s, SUBNET));
  env.containers = [];
  for (let i = 0; i < 2; i++) {
    await deleteNetns(CONTAINERS[i]);
    env.containers.push(await startFakeContainer(env.hosts[i].name, env.socks[i], env.nets[i], CONTAINERS[i]));
  }
  const raw = await rawOverlayUp([env.hosts[0], env.hosts[1]], RAW_SPEC);
  if (raw.netns.join() !== RAW.netns.join() || raw.ips.join() !== RAW.ips.join()) throw new Error(`raw overlay names changed: ${raw.netns.join()} ${raw.ips.join()}`);
  return env as Env;
}

// ---------------------------------------------------------------------------------------------
// a. datapath: vxnet vs the hand-made overlay

interface Side {
  from: string;
  to: string;
}

function sides(env: Env): Record<Kind, Side> {
  return {
    vxnet: { from: env.containers[0].netns, to: env.containers[1].address.split('/')[0] },
    raw: { from: RAW.netns[0], to: RAW.ips[1] },
  };
}

/** RTTs in µs of `count` pings 10 ms apart, from busybox's per-packet times; and how many were lost. */
async function pingRtts(s: Side, count: number): Promise<{ rttsUs: number[]; lost: number }> {
  const r = await run('ip', ['netns', 'exec', s.from, 'busybox', 'ping', '-c', String(count), '-i', '0.01', '-W', '2', s.to], { timeoutMs: count * 100 + 10_000 });
  const rttsUs = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]) * 1000);
  return { rttsUs, lost: count - rttsUs.length };
}

async function startTcpServers(env: Env): Promise<void> {
  const targets: Array<[string, string]> = [
    [env.containers[1].netns, env.containers[1].address.split('/')[0]],
    [RAW.netns[1], RAW.ips[1]],
  ];
  for (const [ns, ip] of targets) children.push(await startTcpServer(['ip', 'netns', 'exec', ns], env.tcpTool, ip, TCP_PORT));
}

function tcpOnce(env: Env, s: Side, seconds: number): Promise<Stream> {
  return tcpStream(['ip', 'netns', 'exec', s.from], env.tcpTool, s.to, TCP_PORT, seconds);
}

interface Datapath {
  /** every ping of every round, µs */
  pingUs: Paired & { lost: Record<Kind, number> };
  /** the per-round ping medians, µs (the paired ratio is taken over these) */
  pingRoundMediansUs: Record<Kind, number[]>;
  tcpGbps: Paired & { samples: Record<Kind, number[]>; retransmits: Record<Kind, Array<number | null>> };
  mtu: Record<Kind, number>;
}

const gbit = (g: number): number => Math.round(g * 100) / 100;

async function linkMtu(ns: string, dev: string): Promise<number> {
  return (JSON.parse(await sh('ip', ['-n', ns, '-j', 'link', 'show', 'dev', dev])) as Array<{ mtu: number }>)[0].mtu;
}

async function benchDatapath(env: Env, opts: Options): Promise<Datapath> {
  const sd = sides(env);
  await startTcpServers(env);
  log(`a. datapath: warm-up, then ${opts.rounds} rounds of ${opts.pings} pings + a ${opts.iperfSeconds} s TCP stream (${env.tcpTool}) per side`);
  for (const kind of order(0)) {
    const w = await pingRtts(sd[kind], 20);
    if (w.rttsUs.length === 0) throw new Error(`${kind}: no ping answered from ${sd[kind].from} to ${sd[kind].to}`);
  }
  const rtts: Record<Kind, number[]> = { vxnet: [], raw: [] };
  const roundMedians: Record<Kind, number[]> = { vxnet: [], raw: [] };
  const lost: Record<Kind, number> = { vxnet: 0, raw: 0 };
  const gbps: Record<Kind, number[]> = { vxnet: [], raw: [] };
  const retransmits: Record<Kind, Array<number | null>> = { vxnet: [], raw: [] };
  for (let r = 0; r < opts.rounds; r++) {
    for (const kind of order(r)) {
      const p = await pingRtts(sd[kind], opts.pings);
      rtts[kind].push(...p.rttsUs);
      roundMedians[kind].push(summarize(p.rttsUs).p50);
      lost[kind] += p.lost;
    }
    for (const kind of order(r)) {
      const t = await tcpOnce(env, sd[kind], opts.iperfSeconds);
      gbps[kind].push(t.gbps);
      retransmits[kind].push(t.retransmits);
    }
    log(`  round ${r + 1}: ping p50 vxnet ${fmt(roundMedians.vxnet[r], 0)} µs, raw ${fmt(roundMedians.raw[r], 0)} µs; TCP vxnet ${fmt(gbps.vxnet[r], 2)}, raw ${fmt(gbps.raw[r], 2)} Gbit/s`);
  }
  const all = paired(rtts.vxnet, rtts.raw, 1);
  const perRound = paired(roundMedians.vxnet, roundMedians.raw, 1);
  return {
    pingUs: { ...all, medianPairedRatio: perRound.medianPairedRatio, lost },
    pingRoundMediansUs: { vxnet: roundMedians.vxnet.map(round1), raw: roundMedians.raw.map(round1) },
    tcpGbps: { ...paired(gbps.vxnet, gbps.raw, 2), samples: { vxnet: gbps.vxnet.map(gbit), raw: gbps.raw.map(gbit) }, retransmits },
    mtu: { vxnet: await linkMtu(env.containers[0].netns, 'eth0'), raw: await linkMtu(RAW.netns[0], 'eth0') },
  };
}

// ---------------------------------------------------------------------------------------------
// b. peer convergence, seen from host2

interface MonEvent {
  /** wall clock (epoch ms) printed by the monitor (-timestamp: gettimeofday when it read the message) */
  stampMs: number | null;
  /** when the line reached this process (epoch ms) */
  arrivalMs: number;
  deleted: boolean;
  line: string;
}

/** `bridge monitor fdb` / `ip monitor neigh` inside a host, every event kept in order. */
class Monitor {
  readonly events: MonEvent[] = [];
  private readonly waiters = new Set<{ pred: (e: MonEvent) => boolean; resolve: (e: MonEvent) => void }>();
  private stamp: number | null = null;

  constructor(ns: string, cmd: string[]) {
    const child = spawnInNetns(ns, cmd);
    readline.createInterface({ input: child.stdout! }).on('line', (line) => this.onLine(line));
  }

  private onLine(line: string): void {
    const ts = /^Timestamp: (.*) (\d+) usec$/.exec(line);
    if (ts) {
      this.stamp = Date.parse(ts[1]) + Number(ts[2]) / 1000;
      return;
    }
    const ev: MonEvent = { stampMs: this.stamp, arrivalMs: epochMs(), deleted: line.startsWith('Deleted '), line };
    this.stamp = null;
    this.events.push(ev);
    for (const w of this.waiters) if (w.pred(ev)) w.resolve(ev);
  }

  /** The first event from index `from` on that matches; null after timeoutMs. */
  waitFor(pred: (e: MonEvent) => boolean, from: number, timeoutMs: number): Promise<MonEvent | null> {
    const seen = this.events.slice(from).find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const w = {
        pred,
        resolve: (e: MonEvent | null): void => {
          this.waiters.delete(w);
          clearTimeout(timer);
          resolve(e);
        },
      };
      const timer = setTimeout(() => w.resolve(null), timeoutMs);
      this.waiters.add(w);
    });
  }
}

const when = (e: MonEvent): number => e.stampMs ?? e.arrivalMs;

async function ok(client: PluginClient, method: string, body: unknown): Promise<Record<string, unknown>> {
  const r = await client.raw(method, body);
  if (r.status !== 200 || r.body.Err || r.body.Error) throw new Error(`${method}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

interface Convergence {
  endpoints: number;
  /** monitor time of the entry on host2 − the moment Join returned on host1 (negative: it was there before) */
  fdbAfterJoinMs: Summary;
  fdbAfterCreateEndpointMs: Summary;
  neighAfterJoinMs: Summary;
  /** monitor time of the FDB deletion on host2 − DeleteEndpoint returned on host1 */
  fdbGoneAfterDeleteEndpointMs: Summary;
  /** entries already on host2 when Join returned on host1 */
  presentBeforeJoinReturned: number;
  missed: { add: number; neigh: number; remove: number };
  /** host1: Join round trip on the socket, and the driver's own time for it (log) */
  joinMs: Summary;
  joinDriverMs: Summary;
  /** host2's driver: time of one diff+program pass ("peer entries synced", log) */
  host2PeerSyncMs: Summary;
  /**
   * host1's driver time per plugin call of the `docker run` sequence (log), p50 each, and the p50
   * over endpoints of their sum: the driver's share of one `docker run` over etcd.
   */
  perCallDriverMs: Record<string, Summary>;
  runDriverMs: Summary;
  /** |monitor stamp − arrival here|: how far the two clocks of an event agree */
  stampVsArrivalMs: Summary;
}

async function benchConvergence(env: Env, opts: Options): Promise<Convergence> {
  const [h1, h2] = env.hosts;
  const fdbMon = new Monitor(h2.name, ['bridge', '-timestamp', 'monitor', 'fdb']);
  const neighMon = new Monitor(h2.name, ['ip', '-timestamp', 'monitor', 'neigh']);
  await sleep(500); // both monitors subscribed
  log(`b. convergence: ${opts.endpoints} endpoints created+joined on ${h1.name}, one at a time, watched on ${h2.name}`);
  const client = new PluginClient(env.socks[0]);
  const net = env.nets[0];
  const d = { fdbJoin: [] as number[], fdbCreate: [] as number[], neighJoin: [] as number[], gone: [] as number[], join: [] as number[], skew: [] as number[] };
  const missed = { add: 0, neigh: 0, remove: 0 };
  let early = 0;
  const windowStart = Date.now();
  try {
    for (let i = 0; i < opts.endpoints; i++) {
      const fromF = fdbMon.events.length;
      const fromN = neighMon.events.length;
      const address = String((await ok(client, 'IpamDriver.RequestAddress', { PoolID: net.poolId, Address: '', Options: null })).Address);
      const ip = address.split('/')[0];
      const ids = { NetworkID: net.networkId, EndpointID: dockerId() };
      const ce = await ok(client, 'NetworkDriver.CreateEndpoint', { ...ids, Interface: { Address: address, AddressIPv6: '', MacAddress: '' }, Options: {} });
      const tCreated = epochMs();
      const mac = (ce.Interface as { MacAddress: string }).MacAddress;
      const t0 = nowMs();
      await ok(client, 'NetworkDriver.Join', { ...ids, SandboxKey: `/var/run/docker/netns/${ids.EndpointID.slice(0, 12)}`, Options: {} });
      const tJoined = epochMs();
      d.join.push(nowMs() - t0);
      await ok(client, 'NetworkDriver.ProgramExternalConnectivity', { ...ids, Options: {} });
      // dockerd asks twice per `docker run` (after Join and for inspect): part of its driver time.
      for (let k = 0; k < 2; k++) await ok(client, 'NetworkDriver.EndpointOperInfo', ids);
      const fdbAdd = (e: MonEvent): boolean => !e.deleted && e.line.startsWith(`${mac} `) && e.line.includes(`dst ${h1.ip}`);
      const neighAdd = (e: MonEvent): boolean => !e.deleted && e.line.startsWith(`${ip} `) && e.line.includes(mac);
      const [f, n] = await Promise.all([fdbMon.waitFor(fdbAdd, fromF, 5000), neighMon.waitFor(neighAdd, fromN, 5000)]);
      if (f) {
        d.fdbJoin.push(when(f) - tJoined);
        d.fdbCreate.push(when(f) - tCreated);
        if (when(f) < tJoined) early++;
        if (f.stampMs !== null) d.skew.push(Math.abs(f.arrivalMs - f.stampMs));
      } else missed.add++;
      if (n) d.neighJoin.push(when(n) - tJoined);
      else missed.neigh++;

      const fromD = fdbMon.events.length;
      await ok(client, 'NetworkDriver.RevokeExternalConnectivity', ids);
      await ok(client, 'NetworkDriver.Leave', ids);
      await ok(client, 'NetworkDriver.DeleteEndpoint', ids);
      const tDeleted = epochMs();
      const g = await fdbMon.waitFor((e) => e.deleted && e.line.startsWith(`Deleted ${mac} `) && e.line.includes(`dst ${h1.ip}`), fromD, 5000);
      if (g) d.gone.push(when(g) - tDeleted);
      else missed.remove++;
      await ok(client, 'IpamDriver.ReleaseAddress', { PoolID: net.poolId, Address: ip });
    }
  } finally {
    client.close();
  }
  await sleep(200); // last log lines
  const windowEnd = Date.now();
  const inWindow = (t: number): boolean => t >= windowStart && t <= windowEnd;
  const syncs = readLogRecords(env.drivers[1].logFile, 'peer entries synced').filter((r) => inWindow(r.time)).map((r) => Number(r.rec.ms));
  const h1Calls = readLoggedCalls(env.drivers[0].logFile).filter((c) => inWindow(c.time));
  const joins = h1Calls.filter((c) => c.call === 'NetworkDriver.Join').map((c) => c.ms);
  const s = (v: number[]): Summary => rounded(summarize(v), 2);
  const byCall = new Map<string, number[]>();
  for (const c of h1Calls) byCall.set(c.call, [...(byCall.get(c.call) ?? []), c.ms]);
  // The calls of one endpoint follow each other (RequestAddress opens a run): sum them per run.
  const runs: number[] = [];
  for (const c of h1Calls) {
    if (c.call === 'IpamDriver.RequestAddress') runs.push(0);
    if (runs.length > 0) runs[runs.length - 1] += c.ms;
  }
  return {
    endpoints: opts.endpoints,
    fdbAfterJoinMs: s(d.fdbJoin),
    fdbAfterCreateEndpointMs: s(d.fdbCreate),
    neighAfterJoinMs: s(d.neighJoin),
    fdbGoneAfterDeleteEndpointMs: s(d.gone),
    presentBeforeJoinReturned: early,
    missed,
    joinMs: s(d.join),
    joinDriverMs: s(joins),
    host2PeerSyncMs: s(syncs),
    perCallDriverMs: Object.fromEntries([...byCall].map(([k, v]) => [k.replace(/^\w+\./, ''), s(v)])),
    runDriverMs: s(runs),
    stampVsArrivalMs: rounded(summarize(d.skew), 3),
  };
}

// ---------------------------------------------------------------------------------------------
// c. IPAM across hosts

interface IpamResult {
  pool: string;
  perHost: number;
  concurrencyPerHost: number;
  requests: number;
  allocated: number;
  distinct: number;
  duplicates: number;
  errors: string[];
  seconds: number;
  allocationsPerSecond: number;
  perHostPerSecond: number[];
  /** allocations/s over the first, middle and last third of the completions (the pool fills up) */
  perSecondByThird: number[];
  requestMs: Summary;
  /** the drivers' own time for those calls (their logs): close to the round trip = waiting inside the driver */
  requestDriverMs: Summary;
  /** CPU seconds used during the allocations: each driver, etcd, and the machine's 2 CPUs' worth of wall time */
  cpuSeconds: { drivers: number[]; etcd: number; wall: number };
  releaseSeconds: number;
  releasesPerSecond: number;
  releaseErrors: number;
  /** address keys of the pool in etcd after every release (before ReleasePool) */
  keysLeftAfterRelease: number;
}

/** Keys under a prefix, counted by etcd itself (its JSON gateway, from inside the etcd host). */
async function etcdCount(env: Env, prefix: string): Promise<number> {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
  const body = JSON.stringify({ key: b64(prefix), range_end: b64(end), count_only: true });
  const out = await env.etcdHost.execOk(['busybox', 'wget', '-q', '-O', '-', '--post-data', body, `${env.etcd.endpoint}/v3/kv/range`]);
  return Number((JSON.parse(out) as { count?: string }).count ?? 0);
}

/** Runs `total` tasks with `width` in flight; resolves when all are done. */
async function pool(total: number, width: number, task: (k: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, total) }, async () => {
    while (next < total) await task(next++);
  }));
}

async function benchIpam(env: Env, opts: Options): Promise<IpamResult> {
  log(`c. IPAM: ${env.hosts.length} hosts × ${opts.allocs} RequestAddress on ${IPAM_POOL}, ${opts.concurrency} in flight per host`);
  const space = 'vxnet-local';
  const poolIds: string[] = [];
  const clients = env.socks.map((s) => new PluginClient(s, opts.concurrency));
  for (const c of clients) poolIds.push(String((await ok(c, 'IpamDriver.RequestPool', { AddressSpace: space, Pool: IPAM_POOL, SubPool: '', Options: {}, V6: false })).PoolID));
  const got: Array<{ ip: string; host: number; doneMs: number; ms: number }> = [];
  const errors: string[] = [];
  const hostSeconds: number[] = [];
  const pids = [...env.drivers.map((d) => d.proc.pid!), env.etcd.proc.pid!];
  const cpu0 = pids.map(cpuSecondsOf);
  const windowStart = Date.now();
  const t0 = nowMs();
  await Promise.all(clients.map(async (c, h) => {
    await pool(opts.allocs, opts.concurrency, async () => {
      const r = await c.raw('IpamDriver.RequestAddress', { PoolID: poolIds[h], Address: '', Options: null });
      if (r.status === 200 && typeof r.body.Address === 'string') got.push({ ip: r.body.Address.split('/')[0], host: h, doneMs: nowMs() - t0, ms: r.ms });
      else errors.push(`${env.hosts[h].name}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
    });
    hostSeconds[h] = (nowMs() - t0) / 1000;
  }));
  const seconds = (nowMs() - t0) / 1000;
  const windowEnd = Date.now();
  const cpu = pids.map((p, i) => Math.round((cpuSecondsOf(p) - cpu0[i]) * 10) / 10);
  const distinct = new Set(got.map((g) => g.ip)).size;
  const done = got.map((g) => g.doneMs).sort((a, b) => a - b);
  const third = Math.floor(done.length / 3);
  const rate = (from: number, to: number): number => (to - from) / ((done[to - 1] - (from === 0 ? 0 : done[from - 1])) / 1000);
  const perSecondByThird = third > 0 ? [rate(0, third), rate(third, 2 * third), rate(2 * third, done.length)].map(Math.round) : [];

  log(`   ${got.length} allocated, ${distinct} distinct, ${errors.length} errors in ${seconds.toFixed(1)} s; releasing`);
  let releaseErrors = 0;
  const t1 = nowMs();
  await Promise.all(clients.map((c, h) => {
    const mine = got.filter((g) => g.host === h);
    return pool(mine.length, opts.concurrency, async (k) => {
      const r = await c.raw('IpamDriver.ReleaseAddress', { PoolID: poolIds[h], Address: mine[k].ip });
      if (r.status !== 200) releaseErrors++;
    });
  }));
  const releaseSeconds = (nowMs() - t1) / 1000;
  await sleep(200); // last log lines
  const driverMs = env.drivers.flatMap((d) =>
    readLoggedCalls(d.logFile).filter((c) => c.call === 'IpamDriver.RequestAddress' && c.time >= windowStart && c.time <= windowEnd + 1).map((c) => c.ms),
  );
  const keysLeftAfterRelease = await etcdCount(env, new Keys(ETCD_PREFIX).addresses(space, IPAM_POOL));
  for (let h = 0; h < clients.length; h++) {
    await ok(clients[h], 'IpamDriver.ReleasePool', { PoolID: poolIds[h] });
    clients[h].close();
  }
  return {
    pool: IPAM_POOL,
    perHost: opts.allocs,
    concurrencyPerHost: opts.concurrency,
    requests: opts.allocs * env.hosts.length,
    allocated: got.length,
    distinct,
    duplicates: got.length - distinct,
    errors: errors.slice(0, 10),
    seconds: round1(seconds),
    allocationsPerSecond: Math.round(got.length / seconds),
    perHostPerSecond: hostSeconds.map((s, h) => Math.round(got.filter((g) => g.host === h).length / s)),
    perSecondByThird,
    requestMs: rounded(summarize(got.map((g) => g.ms)), 2),
    requestDriverMs: rounded(summarize(driverMs), 2),
    cpuSeconds: { drivers: cpu.slice(0, -1), etcd: cpu[cpu.length - 1], wall: round1(seconds) },
    releaseSeconds: round1(releaseSeconds),
    releasesPerSecond: Math.round((got.length - releaseErrors) / releaseSeconds),
    releaseErrors,
    keysLeftAfterRelease,
  };
}

// ---------------------------------------------------------------------------------------------
// Teardown through the driver, and what it leaves behind

async function leftovers(env: Env): Promise<{ links: Record<string, string[]>; rules: Record<string, number>; etcdKeys: Record<string, number> }> {
  for (const c of env.containers.splice(0)) await stopFakeContainer(c);
  for (let i = 0; i < env.socks.length; i++) await removeFakeNetwork(env.socks[i], env.nets[i]);
  const links: Record<string, string[]> = {};
  const rules: Record<string, number> = {};
  for (const h of env.hosts) {
    const all = JSON.parse(await sh('ip', ['-n', h.name, '-j', 'link', 'show'])) as Array<{ ifname: string }>;
    links[h.name] = all.map((l) => l.ifname).filter((n) => n.startsWith('vx') && !n.startsWith('vxt-'));
    rules[h.name] = (await h.execOk(['iptables', '-w', '-S'])).split('\n').filter((l) => /vxb-\d/.test(l)).length;
  }
  const etcdKeys: Record<string, number> = {};
  for (const kind of ['networks', 'endpoints', 'addresses', 'pools', 'vnis']) etcdKeys[kind] = await etcdCount(env, `${ETCD_PREFIX}${kind}/`);
  return { links, rules, etcdKeys };
}

// ---------------------------------------------------------------------------------------------
// Output

type Results = Awaited<ReturnType<typeof runBench>>;

const mb = (kb: number): string => (kb / 1024).toFixed(1);

function tables(r: Results): Array<{ title: string; header: string[]; rows: Array<Array<string | number>>; notes: string[] }> {
  const dp = r.datapath;
  const c = r.convergence;
  const ip = r.ipam;
  const conv = (name: string, s: Summary): Array<string | number> => [name, s.n, fmt(s.p50, 2), fmt(s.p90, 2), fmt(s.p99, 2), fmt(s.max, 2)];
  return [
    {
      title: `a. Datapath host1 → host2 (${r.options.rounds} interleaved rounds; raw = hand-made bridge + VXLAN, same hosts, MTU ${dp.mtu.raw}; vxnet MTU ${dp.mtu.vxnet})`,
      header: ['metric', 'n', 'vxnet p50', 'vxnet p90', 'raw p50', 'raw p90', 'vxnet÷raw', 'paired ratio p50'],
      rows: [
        ['ping RTT (µs)', dp.pingUs.a.n, fmt(dp.pingUs.a.p50, 0), fmt(dp.pingUs.a.p90, 0), fmt(dp.pingUs.b.p50, 0), fmt(dp.pingUs.b.p90, 0), dp.pingUs.ratioOfMedians.toFixed(2), dp.pingUs.medianPairedRatio.toFixed(2)],
        [`TCP single stream (Gbit/s, ${r.tcpTool})`, dp.tcpGbps.a.n, fmt(dp.tcpGbps.a.p50, 2), fmt(dp.tcpGbps.a.p90, 2), fmt(dp.tcpGbps.b.p50, 2), fmt(dp.tcpGbps.b.p90, 2), dp.tcpGbps.ratioOfMedians.toFixed(2), dp.tcpGbps.medianPairedRatio.toFixed(2)],
      ],
      notes: [`Pings lost: vxnet ${dp.pingUs.lost.vxnet}, raw ${dp.pingUs.lost.raw}. Paired ratio: median over rounds of (vxnet ÷ raw) of the same round (per-round medians for ping).`],
    },
    {
      title: `b. Peer convergence: endpoint on host1 → entry on host2 (ms; ${c.endpoints} endpoints, one at a time, monitor timestamps)`,
      header: ['interval (ms)', 'n', 'p50', 'p90', 'p99', 'max'],
      rows: [
        conv('Join returned on host1 → FDB entry on host2', c.fdbAfterJoinMs),
        conv('CreateEndpoint returned on host1 → FDB entry on host2', c.fdbAfterCreateEndpointMs),
        conv('Join returned on host1 → neighbour entry on host2', c.neighAfterJoinMs),
        conv('DeleteEndpoint returned on host1 → FDB entry gone on host2', c.fdbGoneAfterDeleteEndpointMs),
        conv('Join on host1, socket round trip', c.joinMs),
        conv('Join on host1, driver time (log)', c.joinDriverMs),
        conv("host2's peer diff + programming pass (log)", c.host2PeerSyncMs),
      ],
      notes: [
        `Negative = the entry was on host2 before Join returned on host1 (${c.presentBeforeJoinReturned} of ${c.fdbAfterJoinMs.n}): the record is written by CreateEndpoint.`,
        `Missed within 5 s: add ${c.missed.add}, neighbour ${c.missed.neigh}, removal ${c.missed.remove}. Monitor stamp vs arrival here: p50 ${fmt(c.stampVsArrivalMs.p50, 3)} ms.`,
      ],
    },
    {
      title: `b2. Driver time per plugin call on host1 over etcd (ms, log; the calls of one \`docker run --rm\` on a network with a container already on the host, ${c.endpoints} times)`,
      header: ['call', 'n', 'p50', 'p90', 'p99', 'max'],
      rows: [
        ...Object.entries(c.perCallDriverMs).map(([k, v]) => conv(k, v)),
        conv('sum of one run (RequestAddress … ReleaseAddress, EndpointOperInfo ×2)', c.runDriverMs),
      ],
      notes: ['Driver time = fastify\'s elapsed time per request, as the driver logs it (`plugin call` lines).'],
    },
    {
      title: `c. IPAM across ${r.hosts.length} hosts with etcd: ${r.hosts.length} × ${ip.perHost} RequestAddress on one ${ip.pool}, ${ip.concurrencyPerHost} in flight per host`,
      header: ['figure', 'value'],
      rows: [
        ['allocations/s, all hosts', ip.allocationsPerSecond],
        ['allocations/s per host', ip.perHostPerSecond.join(' / ')],
        ['allocations/s by third of the run (pool filling up)', ip.perSecondByThird.join(' → ')],
        ['RequestAddress round trip p50 / p99 (ms)', `${fmt(ip.requestMs.p50, 1)} / ${fmt(ip.requestMs.p99, 1)}`],
        ['RequestAddress driver time p50 / p99 (ms, logs)', `${fmt(ip.requestDriverMs.p50, 1)} / ${fmt(ip.requestDriverMs.p99, 1)}`],
        [`CPU s used in ${ip.cpuSeconds.wall} s: drivers / etcd`, `${ip.cpuSeconds.drivers.join(' + ')} / ${ip.cpuSeconds.etcd}`],
        ['allocated / distinct / duplicates', `${ip.allocated} / ${ip.distinct} / ${ip.duplicates}`],
        ['errors', ip.errors.length],
        ['releases/s, all hosts', ip.releasesPerSecond],
        ['address keys left in etcd after releasing', ip.keysLeftAfterRelease],
      ],
      notes: [ip.duplicates === 0 && ip.distinct === ip.requests ? `OK: ${ip.distinct} addresses, all distinct.` : `FAILED: ${ip.duplicates} duplicates, ${ip.errors.length} errors.`],
    },
    {
      title: 'd. Driver memory (MB)',
      header: ['host', 'VmRSS at start', 'after a + b', 'after c (IPAM)', 'at end (all removed)', 'peak (VmHWM)'],
      rows: [
        ...r.hosts.map((h, i) => {
          const m = r.memory;
          return [h, mb(m.atStart[i].rssKb), mb(m.beforeIpam[i].rssKb), mb(m.afterIpam[i].rssKb), mb(m.atEnd[i].rssKb), mb(m.atEnd[i].peakKb)];
        }),
        [`etcd (${ETCD_HOST.name})`, '-', '-', mb(r.memory.etcd.rssKb), '-', mb(r.memory.etcd.peakKb)],
      ],
      notes: [],
    },
  ];
}

function report(r: Results, md: boolean): string {
  const m = r.machine;
  const lines = [
    md
      ? `**3 hosts + etcd, no dockerd**, ${m.nproc} vCPU, kernel ${m.kernel}, node ${m.node}, vxnet ${r.source.commit?.slice(0, 7) ?? '?'}${r.source.dirty ? '+dirty' : ''}, ${r.timestamp}`
      : `vxnet multi-host — 3 hosts + etcd, ${m.nproc} CPUs, kernel ${m.kernel}, ${r.timestamp}, load ${m.loadavgAtStart.join(' ')}`,
  ];
  for (const t of tables(r)) {
    lines.push('', md ? `*${t.title}*` : t.title, '');
    lines.push(md ? markdownTable(t.header, t.rows) : textTable(t.header, t.rows));
    for (const n of t.notes) lines.push(md ? `\n${n}` : `  ${n}`);
  }
  const left = r.leftovers;
  const leftLinks = Object.entries(left.links).filter(([, l]) => l.length > 0);
  const leftKeys = Object.entries(left.etcdKeys).filter(([, n]) => n > 0);
  const warned = Object.entries(r.driverWarnings).filter(([, c]) => Object.keys(c).length > 0);
  if (warned.length) lines.push('', `Driver warnings: ${warned.map(([h, c]) => `${h} ${JSON.stringify(c)}`).join('; ')}`);
  if (leftLinks.length || Object.values(left.rules).some((n) => n > 0) || leftKeys.length) {
    lines.push('', `LEFTOVERS after removing every endpoint and network: links ${JSON.stringify(left.links)}, rules ${JSON.stringify(left.rules)}, etcd keys ${JSON.stringify(left.etcdKeys)}`);
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Main

async function runBench(opts: Options, env: Partial<Env>) {
  const started = Date.now();
  const machine = await machineInfo();
  const source = await sourceRevision(REPO_ROOT);
  const e = await setUp(env);
  const datapath = await benchDatapath(e, opts);
  const convergence = await benchConvergence(e, opts);
  const rss = (): MemoryKb[] => e.drivers.map((d) => memoryOf(d.proc.pid!));
  const beforeIpam = rss();
  const ipam = await benchIpam(e, opts);
  const afterIpam = rss();
  const etcdMem = memoryOf(e.etcd.proc.pid!);
  log('teardown through the drivers; leftovers');
  const left = await leftovers(e);
  await sleep(2000);
  const atEnd = rss();
  // Anything the drivers logged at warn or above during the whole run, counted by message.
  const warnings = Object.fromEntries(e.drivers.map((d, i) => {
    const counts: Record<string, number> = {};
    for (const { rec } of readLogRecords(d.logFile)) if (Number(rec.level) >= 40) counts[String(rec.msg)] = (counts[String(rec.msg)] ?? 0) + 1;
    return [e.hosts[i].name, counts];
  }));
  return {
    ...resultHeader('multi-host', started, opts, machine),
    source,
    hosts: e.hosts.map((h) => h.name),
    underlay: Object.fromEntries([ETCD_HOST, ...HOSTS].map((h) => [h.name, h.ip])),
    driver: { main: path.relative(REPO_ROOT, MAIN_JS), logLevel: 'info', store: 'etcd', vtepInterface: 'eth0' },
    raw: { vni: RAW.vni, port: 4789, mtu: RAW.mtu, note: 'bridge + VXLAN (nolearning, static FDB) in the same host namespaces, FORWARD ACCEPT rule for its bridge inserted first' },
    tcpTool: e.tcpTool,
    units: 'ms unless named otherwise; percentiles interpolate between closest ranks',
    datapath,
    convergence,
    ipam,
    memory: { atStart: e.memoryAtStart, beforeIpam, afterIpam, atEnd, etcd: etcdMem },
    leftovers: left,
    driverWarnings: warnings,
  };
}

async function main(): Promise<number> {
  const pre = preflight(parseArgs, USAGE, 'multi-host bench', MAIN_JS);
  if ('code' in pre) return pre.code;
  const opts = pre.opts;
  const underlayExisted = netnsExists('vxt-ul');
  const env: Partial<Env> = {};
  return runWithCleanup(
    async () => {
      let results: Results;
      try {
        results = await runBench(opts, env);
      } catch (err) {
        for (const d of env.drivers ?? []) {
          const tail = logTail(d.logFile, 10);
          if (tail) process.stderr.write(`last log lines of ${d.logFile}:\n${tail}\n`);
        }
        throw err;
      }
      fs.mkdirSync(path.dirname(opts.out), { recursive: true });
      fs.writeFileSync(opts.out, `${JSON.stringify(results, null, 2)}\n`);
      process.stdout.write(`\n${report(results, false)}\n\n--- Markdown ---\n\n${report(results, true)}\n\n`);
      log(`results: ${path.relative(process.cwd(), opts.out) || opts.out}`);
      // The one assertion: an address handed out twice is a bug, whatever the timing.
      return results.ipam.duplicates === 0 ? 0 : 1;
    },
    async () => {
      killChildren();
      for (const ns of CONTAINERS) await deleteNetns(ns);
      const hosts = env.hosts ?? [];
      if (hosts.length >= 2) await rawOverlayDown([hosts[0], hosts[1]], RAW_SPEC).catch((err: unknown) => log(`raw overlay: ${(err as Error).message}`));
      for (const h of [...HOSTS, ETCD_HOST]) await downHost(h.name).catch((err: unknown) => log(`downHost ${h.name}: ${(err as Error).message}`));
      // The underlay goes only if this run made it, and only when no host is left on it.
      if (!underlayExisted) await underlayDown();
    },
  );
}

void main().then((code) => process.exit(code));
