// vxnet next to Docker's built-in swarm overlay, on the same swarm of three simulated hosts
// (dockerd 20.10 each, the managed plugin in global scope, one etcd in a fourth host; the setup of
// test/e2e/swarm.test.ts). Two attachable swarm networks live side by side, one per driver, and
// every figure is taken on both in the same run, alternating which goes first (A B, B A, …):
//   1. `docker run --rm --network NET vxt-busybox:local sh -c true` on a worker and on the manager
//   2. ping RTT between two attached containers on two different hosts (busybox's average of 20)
//   3. `docker service create` of 3 replicas (one per host, dnsrr) until swarm reports 3 running,
//      then `docker service rm` until every task container is gone
// Prints text and Markdown tables and writes bench/results/swarm.json.
// A benchmark, not a test: nothing asserts a time.
//
//   npm run bench:swarm [-- --runs N --warmup N --ping-rounds N --services N …]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Host, upHost, downHost, underlayDown, run, describeFailure, REPO_ROOT } from '../test/helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../test/helpers/image';
import { HostEtcd, startEtcdInHost } from '../test/helpers/etcd-in-host';
import { containerIp, vxLinks } from '../test/helpers/docker-inspect';
import { eventually } from '../test/helpers/eventually';
import { MAIN_JS } from '../test/helpers/vxnet-in-host';
import { machineInfo, sourceRevision, resultHeader, dockerVersions } from './lib/machine';
import { summarize, rounded, paired, Paired, Summary, textTable, markdownTable, fmt } from './lib/stats';
import { log, sleep, nowMs, round1, intArg, eachFlag, preflight, runWithCleanup } from './lib/runner';

// ---------------------------------------------------------------------------------------------
// Options and fixed names

interface Options {
  runs: number;
  warmup: number;
  pingRounds: number;
  pings: number;
  services: number;
  serviceWarmup: number;
  /** measured runs of part 1b (warm worker, vxnet / overlay / bridge); 0 skips it */
  warmRuns: number;
  pollMs: number;
  out: string;
}

const USAGE = `Usage: node dist/bench/swarm.js [options]     (build first: npm run build)

  --runs N            measured docker runs per network and host (default 15)
  --warmup N          docker runs per network and host before measuring (default 2)
  --ping-rounds N     interleaved ping rounds per network (default 6)
  --pings N           pings per round, 0.2 s apart (default 20)
  --services N        measured 3-replica services per network (default 5; 0 skips part 3)
  --warm-runs N       part 1b, docker runs per network on a warm worker (default 15; 0 skips it)
  --service-warmup N  services per network before measuring (default 1)
  --poll-ms N         how often \`docker service ps\` is asked while waiting (default 100)
  --out FILE          results file (default bench/results/swarm.json)

Needs root. Creates hosts vxt-b0 (etcd, 172.31.254.110) and vxt-b1..b3 (dockerd 20.10,
172.31.254.111-113), builds the managed plugin from dist/ (docker-plugin/build.sh --no-build)
and installs it on each, makes a swarm, removes everything at the end.`;

function parseArgs(argv: string[]): Options {
  const o: Options = {
    runs: 15, warmup: 2, pingRounds: 6, pings: 20, services: 5, serviceWarmup: 1, warmRuns: 15, pollMs: 100,
    out: path.join(REPO_ROOT, 'bench/results/swarm.json'),
  };
  eachFlag(argv, USAGE, (flag, next) => {
    switch (flag) {
      case '--runs': o.runs = intArg(flag, next(), 1); break;
      case '--warmup': o.warmup = intArg(flag, next(), 0); break;
      case '--ping-rounds': o.pingRounds = intArg(flag, next(), 1); break;
      case '--pings': o.pings = intArg(flag, next(), 2); break;
      case '--services': o.services = intArg(flag, next(), 0); break;
      case '--warm-runs': o.warmRuns = intArg(flag, next(), 0); break;
      case '--service-warmup': o.serviceWarmup = intArg(flag, next(), 0); break;
      case '--poll-ms': o.pollMs = intArg(flag, next(), 20); break;
      case '--out': o.out = path.resolve(next() ?? o.out); break;
      default: throw new Error(`unknown argument ${flag} (see --help)`);
    }
  });
  return o;
}

const ETCD_HOST = { name: 'vxt-b0', ip: '172.31.254.110' };
/** The first is the manager. */
const HOSTS = [
  { name: 'vxt-b1', ip: '172.31.254.111' },
  { name: 'vxt-b2', ip: '172.31.254.112' },
  { name: 'vxt-b3', ip: '172.31.254.113' },
];
const PLUGIN = 'vxnet/vxnet:latest';
const BUILD_SH = path.join(REPO_ROOT, 'docker-plugin/build.sh');
const REPLICAS = HOSTS.length;
/** Limits of the bounded waits. */
const SERVICE_RUNNING_WITHIN_MS = 120_000;
const TASKS_GONE_WITHIN_MS = 60_000;

type Kind = 'vxnet' | 'overlay';
const KINDS: Kind[] = ['vxnet', 'overlay'];
const NET: Record<Kind, { name: string; subnet: string; create: string[] }> = {
  vxnet: { name: 'vxt-bsw-vx', subnet: '10.96.0.0/24', create: ['-d', PLUGIN, '--ipam-driver', PLUGIN] },
  overlay: { name: 'vxt-bsw-ov', subnet: '10.97.0.0/24', create: ['-d', 'overlay'] },
};
/** Long-lived containers of part 2: one per network on each of the two hosts pinged between. */
const PINGER = (kind: Kind, i: number): string => `vxt-bsw-p${i}-${kind === 'vxnet' ? 'vx' : 'ov'}`;

/** Both networks each round; which goes first alternates, so drift and order effects cancel. */
function order(round: number): Kind[] {
  return round % 2 === 0 ? ['vxnet', 'overlay'] : ['overlay', 'vxnet'];
}

// ---------------------------------------------------------------------------------------------
// Setup and teardown

interface Env {
  etcdHost: Host;
  etcd: HostEtcd;
  hosts: Host[];
  pluginDir: string;
  /** what exists, so that cleanup removes exactly that */
  networks: Set<Kind>;
  services: Set<string>;
  containers: Array<{ host: Host; name: string }>;
  /** local (non-swarm) networks made on one host */
  localNetworks: Array<{ host: Host; name: string }>;
}

async function setUp(env: Partial<Env>): Promise<Env> {
  env.networks = new Set();
  env.services = new Set();
  env.containers = [];
  env.localNetworks = [];
  env.hosts = [];
  log(`hosts ${ETCD_HOST.name} (etcd), ${HOSTS.map((h) => h.name).join(', ')} (dockerd 20.10)`);
  env.etcdHost = await upHost(ETCD_HOST.name, ETCD_HOST.ip, { docker: null });
  env.etcd = await startEtcdInHost(env.etcdHost);
  for (const h of HOSTS) env.hosts.push(await upHost(h.name, h.ip, { docker: '20' }));

  // One build from the dist/ just compiled; each dockerd then unpacks its own copy.
  env.pluginDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vxt-bswplugin-'));
  log('managed plugin: docker-plugin/build.sh --no-build --no-create');
  const b = await run('bash', [BUILD_SH, '--no-build', '--no-create', '--dir', env.pluginDir], { timeoutMs: 300_000 });
  if (b.code !== 0) throw describeFailure('docker-plugin/build.sh', b);
  for (const h of env.hosts) {
    await ensureTestImage(h);
    const data = path.join(h.stateDir, 'plugin-data');
    fs.mkdirSync(data, { recursive: true });
    await h.dockerOk(['plugin', 'create', PLUGIN, env.pluginDir], { timeoutMs: 300_000 });
    await h.dockerOk([
      'plugin', 'set', PLUGIN,
      `data.source=${data}`,
      'VXNET_STORE=etcd',
      `VXNET_ETCD_ENDPOINTS=${env.etcd.endpoint}`,
      'VXNET_VTEP_INTERFACE=eth0',
      `VXNET_HOST_ID=${h.name}`,
      'VXNET_SCOPE=global',
    ]);
    await h.dockerOk(['plugin', 'enable', PLUGIN], { timeoutMs: 120_000 });
  }

  const [manager, ...workers] = env.hosts;
  log(`swarm: manager ${manager.name}, workers ${workers.map((w) => w.name).join(', ')}`);
  await manager.dockerOk(['swarm', 'init', '--advertise-addr', manager.ip]);
  const token = await manager.dockerOk(['swarm', 'join-token', '-q', 'worker']);
  for (const w of workers) await w.dockerOk(['swarm', 'join', '--advertise-addr', w.ip, '--token', token, `${manager.ip}:2377`]);
  await eventually('every node ready', async () => {
    const states = (await manager.dockerOk(['node', 'ls', '--format', '{{.Status}}'])).split('\n');
    return states.length === REPLICAS && states.every((s) => s === 'Ready');
  }, 60_000, 500);

  for (const kind of KINDS) {
    const n = NET[kind];
    await manager.dockerOk(['network', 'create', ...n.create, '--attachable', '--subnet', n.subnet, n.name]);
    env.networks.add(kind);
  }
  // The manager's allocator finishes after `network create` returns (the plugin's network shows
  // its driver only once allocated); a docker run before that is refused.
  await eventually('swarm allocated both networks', async () => {
    for (const kind of KINDS) {
      const drv = await manager.docker(['network', 'inspect', '-f', '{{.Driver}}', NET[kind].name]);
      if (drv.code !== 0 || drv.stdout.trim() !== (kind === 'vxnet' ? PLUGIN : 'overlay')) return false;
    }
    return true;
  }, 30_000, 200);
  return env as Env;
}

async function cleanUp(env: Partial<Env>): Promise<void> {
  const hosts = env.hosts ?? [];
  const [manager] = hosts;
  const quiet = async (what: string, p: Promise<unknown>): Promise<void> => {
    await p.catch((e: unknown) => log(`cleanup ${what}: ${(e as Error).message}`));
  };
  if (manager) {
    for (const s of env.services ?? []) await manager.docker(['service', 'rm', s]);
    for (const c of env.containers ?? []) await c.host.docker(['rm', '-f', c.name]);
    for (const n of env.localNetworks ?? []) await n.host.docker(['network', 'rm', n.name]);
    for (const kind of env.networks ?? []) {
      // A network whose tasks are still being torn down is "in use" for a moment: retry, bounded.
      await quiet(`network rm ${NET[kind].name}`, eventually(`network rm ${NET[kind].name}`, async () => {
        const r = await manager.docker(['network', 'rm', NET[kind].name]);
        return r.code === 0 || /not found/i.test(r.stderr);
      }, 30_000, 1000));
    }
  }
  for (const h of [...hosts].reverse()) {
    await h.docker(['swarm', 'leave', '--force']);
    const all = (await h.docker(['ps', '-aq'])).stdout.split('\n').filter(Boolean);
    if (all.length) await h.docker(['rm', '-f', ...all]);
    await h.docker(['plugin', 'disable', '-f', PLUGIN], { timeoutMs: 60_000 });
    await h.docker(['plugin', 'rm', '-f', PLUGIN], { timeoutMs: 60_000 });
  }
  if (env.etcd) await quiet('etcd', env.etcd.stop());
  // By name, so hosts whose upHost failed half-way go too (nothing else uses these names).
  for (const h of [...HOSTS, ETCD_HOST]) await quiet(`downHost ${h.name}`, downHost(h.name));
  if (env.pluginDir) fs.rmSync(env.pluginDir, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------
// Helpers

async function timedDocker(host: Host, args: string[], timeoutMs = 120_000): Promise<number> {
  const t0 = nowMs();
  const r = await host.docker(args, { timeoutMs });
  const ms = nowMs() - t0;
  if (r.code !== 0) throw describeFailure(`[${host.name}] docker ${args.join(' ')}`, r);
  return ms;
}

/**
 * vxnet's plugin calls that reached one host's dockerd log since byte `from`: the managed
 * plugin's stdout lands there, one dockerd line per driver log line, its JSON escaped.
 */
function pluginCallsIn(host: Host, from: number): { calls: Record<string, number>; callMs: Record<string, number>; driverMs: number; end: number } {
  const end = fs.statSync(host.dockerLog).size;
  const fd = fs.openSync(host.dockerLog, 'r');
  const buf = Buffer.alloc(end - from);
  fs.readSync(fd, buf, 0, buf.length, from);
  fs.closeSync(fd);
  const calls: Record<string, number> = {};
  const callMs: Record<string, number> = {};
  let driverMs = 0;
  for (const m of buf.toString().matchAll(/\\?"call\\?":\\?"(?:NetworkDriver|IpamDriver)\.(\w+)\\?",\\?"ms\\?":([\d.]+)/g)) {
    calls[m[1]] = (calls[m[1]] ?? 0) + 1;
    callMs[m[1]] = (callMs[m[1]] ?? 0) + Number(m[2]);
    driverMs += Number(m[2]);
  }
  return { calls, callMs, driverMs: round1(driverMs), end };
}

function logSize(host: Host): number {
  return fs.statSync(host.dockerLog).size;
}

interface SideBySide {
  vxnet: Summary;
  overlay: Summary;
  /** vxnet median ÷ overlay median */
  ratioOfMedians: number;
  /** median over rounds of (vxnet ÷ overlay) of the same round */
  medianPairedRatio: number;
  samples: Record<Kind, number[]>;
}

function sideBySide(s: Record<Kind, number[]>, digits = 1): SideBySide {
  const p: Paired = paired(s.vxnet, s.overlay, digits);
  return {
    vxnet: p.a,
    overlay: p.b,
    ratioOfMedians: p.ratioOfMedians,
    medianPairedRatio: p.medianPairedRatio,
    samples: { vxnet: s.vxnet.map(round1), overlay: s.overlay.map(round1) },
  };
}

// ---------------------------------------------------------------------------------------------
// 1. docker run --rm

async function benchDockerRun(host: Host, role: string, opts: Options) {
  const args = (kind: Kind): string[] => ['run', '--rm', '--network', NET[kind].name, TEST_IMAGE, 'sh', '-c', 'true'];
  log(`1. docker run on ${host.name} (${role}): ${opts.warmup} warm-up + ${opts.runs} measured runs per network, interleaved`);
  for (let i = 0; i < opts.warmup; i++) for (const kind of order(i)) await timedDocker(host, args(kind));
  const ms: Record<Kind, number[]> = { vxnet: [], overlay: [] };
  let offset = logSize(host);
  const perRun: Array<{ calls: Record<string, number>; callMs: Record<string, number>; driverMs: number }> = [];
  for (let i = 0; i < opts.runs; i++) {
    for (const kind of order(i)) {
      if (kind === 'vxnet') offset = logSize(host);
      ms[kind].push(await timedDocker(host, args(kind)));
      if (kind === 'vxnet') {
        // The driver logs its call after answering; the last (ReleaseAddress) may trail the CLI.
        await sleep(50);
        const c = pluginCallsIn(host, offset);
        perRun.push({ calls: c.calls, callMs: c.callMs, driverMs: c.driverMs });
      }
    }
  }
  return {
    host: host.name,
    role,
    ...sideBySide(ms),
    ...callBreakdown(perRun),
  };
}

/** p50 per run of each call's count and summed driver time, and of the whole run's driver time. */
function callBreakdown(perRun: Array<{ calls: Record<string, number>; callMs: Record<string, number>; driverMs: number }>) {
  const callKinds = [...new Set(perRun.flatMap((r) => Object.keys(r.calls)))];
  return {
    /**
     * vxnet's calls in this host's dockerd log (the managed plugin's stdout) while one measured
     * vxnet run was in progress, plus 50 ms; on the manager they include swarm's allocator calls
     */
    vxnetCallsPerRun: Object.fromEntries(callKinds.map((k) => [k, rounded(summarize(perRun.map((r) => r.calls[k] ?? 0)), 1).p50])),
    vxnetDriverMsPerRun: rounded(summarize(perRun.map((r) => r.driverMs)), 1),
    /** p50 per run of each call's driver time (summed when a run makes the call twice) */
    vxnetCallMsPerRun: Object.fromEntries(callKinds.map((k) => [k, rounded(summarize(perRun.map((r) => r.callMs[k] ?? 0)), 2).p50])),
  };
}

// ---------------------------------------------------------------------------------------------
// 1b. docker run --rm on a warm worker: vxnet, overlay and a local bridge network

type WarmKind = Kind | 'bridge';
const BRIDGE_NET = 'vxt-bsw-br';
const RESIDENT = (kind: WarmKind): string => `vxt-bsw-r-${kind}`;

/**
 * The issue's figure: a container of each network already runs on the worker, so no network
 * is built for the run (on an attachable swarm network dockerd keeps it while a container
 * uses it). Docker's bridge on the same host is the floor any driver is compared to.
 */
async function benchWarmRun(env: Env, host: Host, opts: Options) {
  const kinds: WarmKind[] = ['vxnet', 'overlay', 'bridge'];
  const netName = (k: WarmKind): string => (k === 'bridge' ? BRIDGE_NET : NET[k].name);
  log(`1b. warm docker run on ${host.name}: a resident container per network, ${opts.warmup} warm-up + ${opts.warmRuns} measured runs each, rotating`);
  await host.dockerOk(['network', 'create', '-d', 'bridge', BRIDGE_NET]);
  env.localNetworks.push({ host, name: BRIDGE_NET });
  for (const k of kinds) {
    env.containers.push({ host, name: RESIDENT(k) });
    await host.dockerOk(['run', '-d', '--name', RESIDENT(k), '--network', netName(k), TEST_IMAGE, 'sleep', '3600']);
  }
  const args = (k: WarmKind): string[] => ['run', '--rm', '--network', netName(k), TEST_IMAGE, 'sh', '-c', 'true'];
  // Rotate which goes first, so drift and order effects spread evenly over the three.
  const rotation = (i: number): WarmKind[] => kinds.map((_, j) => kinds[(i + j) % kinds.length]);
  for (let i = 0; i < opts.warmup; i++) for (const k of rotation(i)) await timedDocker(host, args(k));
  const ms: Record<WarmKind, number[]> = { vxnet: [], overlay: [], bridge: [] };
  const perRun: Array<{ calls: Record<string, number>; callMs: Record<string, number>; driverMs: number }> = [];
  for (let i = 0; i < opts.warmRuns; i++) {
    for (const k of rotation(i)) {
      const offset = logSize(host);
      ms[k].push(await timedDocker(host, args(k)));
      if (k === 'vxnet') {
        await sleep(50);
        const c = pluginCallsIn(host, offset);
        perRun.push({ calls: c.calls, callMs: c.callMs, driverMs: c.driverMs });
      }
    }
  }
  for (const k of kinds) {
    await host.docker(['rm', '-f', RESIDENT(k)]);
    env.containers = env.containers.filter((c) => c.name !== RESIDENT(k));
  }
  const vsBridge = paired(ms.vxnet, ms.bridge, 2);
  return {
    host: host.name,
    ...sideBySide({ vxnet: ms.vxnet, overlay: ms.overlay }),
    bridge: rounded(summarize(ms.bridge), 1),
    bridgeSamples: ms.bridge.map(round1),
    /** vxnet median ÷ bridge median, and the median of the same round's ratios */
    vsBridge: { ratioOfMedians: vsBridge.ratioOfMedians, medianPairedRatio: vsBridge.medianPairedRatio },
    ...callBreakdown(perRun),
  };
}

// ---------------------------------------------------------------------------------------------
// 2. cross-host ping

interface PingRound {
  avgUs: number;
  perPacketUs: number[];
  lost: number;
}

async function pingRound(from: Host, container: string, to: string, count: number): Promise<PingRound> {
  const r = await from.docker(['exec', container, 'ping', '-c', String(count), '-i', '0.2', '-W', '2', to], { timeoutMs: count * 1000 + 20_000 });
  const perPacketUs = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]) * 1000);
  const avg = /min\/avg\/max = [\d.]+\/([\d.]+)\//.exec(r.stdout);
  if (!avg) throw describeFailure(`[${from.name}] ping ${to} from ${container}`, r);
  return { avgUs: Number(avg[1]) * 1000, perPacketUs, lost: count - perPacketUs.length };
}

async function benchPing(env: Env, opts: Options) {
  const [, a, b] = env.hosts;
  log(`2. ping ${a.name} → ${b.name}: ${opts.pingRounds} rounds of ${opts.pings} pings per network, interleaved`);
  const target: Record<Kind, string> = { vxnet: '', overlay: '' };
  const view: Record<Kind, { interfaces: string[]; mtu: number }> = { vxnet: { interfaces: [], mtu: 0 }, overlay: { interfaces: [], mtu: 0 } };
  for (const kind of KINDS) {
    for (const [i, h] of [a, b].entries()) {
      env.containers.push({ host: h, name: PINGER(kind, i) });
      await h.dockerOk(['run', '-d', '--name', PINGER(kind, i), '--network', NET[kind].name, TEST_IMAGE, 'sleep', '3600']);
    }
    target[kind] = await containerIp(b, NET[kind].name, PINGER(kind, 1));
    // What a container gets on each network: swarm's overlay adds eth1 on docker_gwbridge for
    // the way out, vxnet's bridge is the gateway itself; that second endpoint is part of the cost.
    const addrs = await a.dockerOk(['exec', PINGER(kind, 0), 'ip', '-o', '-4', 'addr', 'show']);
    view[kind] = {
      interfaces: addrs.split('\n').map((l) => l.trim().split(/\s+/)).map((f) => `${f[1]} ${f[3]}`),
      mtu: Number(await a.dockerOk(['exec', PINGER(kind, 0), 'cat', '/sys/class/net/eth0/mtu'])),
    };
  }
  // First packets pay ARP and (overlay) the peer lookup: not measured.
  for (const kind of KINDS) {
    const w = await pingRound(a, PINGER(kind, 0), target[kind], 5);
    if (w.perPacketUs.length === 0) throw new Error(`${kind}: no ping answered from ${a.name} to ${target[kind]}`);
  }
  const avgs: Record<Kind, number[]> = { vxnet: [], overlay: [] };
  const packets: Record<Kind, number[]> = { vxnet: [], overlay: [] };
  const lost: Record<Kind, number> = { vxnet: 0, overlay: 0 };
  for (let r = 0; r < opts.pingRounds; r++) {
    for (const kind of order(r)) {
      const p = await pingRound(a, PINGER(kind, 0), target[kind], opts.pings);
      avgs[kind].push(p.avgUs);
      packets[kind].push(...p.perPacketUs);
      lost[kind] += p.lost;
    }
    log(`   round ${r + 1}: avg vxnet ${fmt(avgs.vxnet[r], 0)} µs, overlay ${fmt(avgs.overlay[r], 0)} µs`);
  }
  // Where each network's VXLAN lives: vxnet's device in the host namespace, swarm's in its own.
  const vnis = {
    vxnetDevicesOnHosts: Object.fromEntries(await Promise.all([a, b].map(async (h) => [h.name, (await vxLinks(h)).filter((n) => n.startsWith('vxv-'))] as const))),
    overlayVxlanIdList: await env.hosts[0].dockerOk(['network', 'inspect', '-f', '{{index .Options "com.docker.network.driver.overlay.vxlanid_list"}}', NET.overlay.name]),
  };
  for (const kind of KINDS) {
    for (const [i, h] of [a, b].entries()) await h.dockerOk(['rm', '-f', PINGER(kind, i)]);
  }
  env.containers.length = 0;
  return {
    from: a.name,
    to: b.name,
    pingsPerRound: opts.pings,
    intervalSeconds: 0.2,
    /** one sample per round: busybox's average RTT of that round, µs */
    avgUs: sideBySide(avgs, 1),
    perPacketUs: { vxnet: rounded(summarize(packets.vxnet), 1), overlay: rounded(summarize(packets.overlay), 1) },
    lost,
    containerView: view,
    vnis,
  };
}

// ---------------------------------------------------------------------------------------------
// 3. services

interface ServiceSample {
  name: string;
  /** `service create --detach` returning */
  createCliMs: number;
  /** from `service create` starting to `service ps` showing every replica Running */
  runningMs: number;
  /**
   * from `service rm` starting to no task container left on any host; `sleep` as the container's
   * PID 1 ignores SIGTERM, so this holds dockerd's 10 s stop timeout
   */
  removedMs: number;
  /** task attempts that did not reach Running (swarm retried them), with their errors */
  failedAttempts: string[];
  nodes: string[];
  polls: number;
}

async function serviceOnce(env: Env, kind: Kind, name: string, opts: Options): Promise<ServiceSample> {
  const [manager] = env.hosts;
  env.services.add(name);
  const t0 = nowMs();
  await timedDocker(manager, [
    'service', 'create', '--detach', '--name', name, '--replicas', String(REPLICAS), '--replicas-max-per-node', '1',
    '--endpoint-mode', 'dnsrr', '--no-resolve-image', '--network', NET[kind].name, TEST_IMAGE, 'sleep', '3600',
  ]);
  const createCliMs = nowMs() - t0;
  let polls = 0;
  let runningMs = NaN;
  while (nowMs() - t0 < SERVICE_RUNNING_WITHIN_MS) {
    polls++;
    const out = await manager.dockerOk(['service', 'ps', name, '--filter', 'desired-state=running', '--format', '{{.CurrentState}}']);
    if (out.split('\n').filter((s) => s.startsWith('Running')).length === REPLICAS) {
      runningMs = nowMs() - t0;
      break;
    }
    await sleep(opts.pollMs);
  }
  if (Number.isNaN(runningMs)) throw new Error(`service ${name} on ${NET[kind].name}: not ${REPLICAS} running within ${SERVICE_RUNNING_WITHIN_MS} ms`);
  const history = (await manager.dockerOk(['service', 'ps', name, '--no-trunc', '--format', '{{.Node}}|{{.DesiredState}}|{{.CurrentState}}|{{.Error}}'])).split('\n');
  const nodes = history.filter((l) => l.split('|')[1] === 'Running').map((l) => l.split('|')[0]).sort();
  const failedAttempts = history.filter((l) => l.split('|')[1] !== 'Running');

  const t1 = nowMs();
  await timedDocker(manager, ['service', 'rm', name]);
  env.services.delete(name);
  await eventually(`tasks of ${name} gone`, async () => {
    for (const h of env.hosts) {
      if ((await h.dockerOk(['ps', '-aq', '--filter', `label=com.docker.swarm.service.name=${name}`])) !== '') return false;
    }
    return true;
  }, TASKS_GONE_WITHIN_MS, opts.pollMs);
  const removedMs = nowMs() - t1;
  return { name, createCliMs, runningMs, removedMs, failedAttempts, nodes, polls };
}

async function benchServices(env: Env, opts: Options) {
  log(`3. services: ${opts.serviceWarmup} warm-up + ${opts.services} measured ${REPLICAS}-replica services per network, interleaved`);
  let seq = 0;
  const nameOf = (kind: Kind): string => `vxt-bsw-${kind === 'vxnet' ? 'vx' : 'ov'}-${++seq}`;
  for (let i = 0; i < opts.serviceWarmup; i++) for (const kind of order(i)) await serviceOnce(env, kind, nameOf(kind), opts);
  const samples: Record<Kind, ServiceSample[]> = { vxnet: [], overlay: [] };
  for (let i = 0; i < opts.services; i++) {
    for (const kind of order(i)) samples[kind].push(await serviceOnce(env, kind, nameOf(kind), opts));
    log(`   round ${i + 1}: running after vxnet ${fmt(samples.vxnet[i].runningMs, 0)} ms, overlay ${fmt(samples.overlay[i].runningMs, 0)} ms`);
  }
  const series = (f: (s: ServiceSample) => number): Record<Kind, number[]> => ({ vxnet: samples.vxnet.map(f), overlay: samples.overlay.map(f) });
  return {
    replicas: REPLICAS,
    pollMs: opts.pollMs,
    running: sideBySide(series((s) => s.runningMs), 0),
    removed: sideBySide(series((s) => s.removedMs), 0),
    createCli: sideBySide(series((s) => s.createCliMs), 0),
    samples: Object.fromEntries(KINDS.map((k) => [k, samples[k].map((s) => ({ ...s, createCliMs: round1(s.createCliMs), runningMs: round1(s.runningMs), removedMs: round1(s.removedMs) }))])),
  };
}

// ---------------------------------------------------------------------------------------------
// Output

type Results = Awaited<ReturnType<typeof runBench>>;

function rows(r: Results): Array<Array<string | number>> {
  const row = (name: string, s: SideBySide, digits: number): Array<string | number> => [
    name, s.vxnet.n, fmt(s.vxnet.p50, digits), fmt(s.vxnet.p90, digits), fmt(s.overlay.p50, digits), fmt(s.overlay.p90, digits),
    s.ratioOfMedians.toFixed(2), s.medianPairedRatio.toFixed(2),
  ];
  const [worker, manager] = r.dockerRun;
  const out = [
    row(`docker run --rm … sh -c true, worker ${worker.host} (ms)`, worker, 0),
    row(`docker run --rm … sh -c true, manager ${manager.host} (ms)`, manager, 0),
  ];
  if (r.warmRun) out.push(row(`docker run --rm, warm worker ${r.warmRun.host} (a container of each network there; ms)`, r.warmRun, 0));
  out.push(row(`ping RTT ${r.ping.from} → ${r.ping.to}, avg of ${r.ping.pingsPerRound} (µs)`, r.ping.avgUs, 0));
  if (r.services) {
    out.push(row(`service create → ${r.services.replicas}/${r.services.replicas} running (ms)`, r.services.running, 0));
    out.push(row('service rm → every task container gone (ms; holds the 10 s stop timeout)', r.services.removed, 0));
  }
  return out;
}
const HEADER = ['figure', 'n', 'vxnet p50', 'vxnet p90', 'overlay p50', 'overlay p90', 'vxnet÷overlay', 'paired ratio p50'];

function notes(r: Results): string[] {
  const services = r.services;
  const failed = services ? KINDS.map((k) => `${k} ${services.samples[k].reduce((a, s) => a + s.failedAttempts.length, 0)}`).join(', ') : 'part 3 skipped';
  const callText = (d: { vxnetCallsPerRun: Record<string, number>; vxnetCallMsPerRun: Record<string, number>; vxnetDriverMsPerRun: Summary }): string =>
    `${Object.entries(d.vxnetCallsPerRun).map(([c, n]) => `${c} ×${n} ${fmt(d.vxnetCallMsPerRun[c] ?? 0, 1)}`).join(', ')}; driver ${fmt(d.vxnetDriverMsPerRun.p50, 1)} ms`;
  const calls = r.dockerRun.map((d) => `${d.host}: ${callText(d)}`);
  const warm = r.warmRun;
  return [
    ...(warm
      ? [`Warm worker ${warm.host}: bridge p50 ${fmt(warm.bridge.p50, 0)} ms; vxnet÷bridge ${warm.vsBridge.ratioOfMedians.toFixed(2)} (paired ${warm.vsBridge.medianPairedRatio.toFixed(2)}); vxnet calls (count, p50 ms) — ${callText(warm)}.`]
      : []),
    `Pings lost: vxnet ${r.ping.lost.vxnet}, overlay ${r.ping.lost.overlay}. Per packet p50: vxnet ${fmt(r.ping.perPacketUs.vxnet.p50, 0)} µs, overlay ${fmt(r.ping.perPacketUs.overlay.p50, 0)} µs. eth0 MTU vxnet ${r.ping.containerView.vxnet.mtu}, overlay ${r.ping.containerView.overlay.mtu}.`,
    `Task attempts that failed and were retried: ${failed}. \`service ps\` polled every ${services?.pollMs ?? 0} ms.`,
    `Container interfaces: vxnet ${r.ping.containerView.vxnet.interfaces.join(', ')}; overlay ${r.ping.containerView.overlay.interfaces.join(', ')}.`,
    `vxnet plugin calls logged on the host while one vxnet docker run was in progress (count, p50 driver ms; the plugin logs to dockerd's log) — ${calls.join(' | ')}.`,
  ];
}

function report(r: Results, md: boolean): string {
  const m = r.machine;
  const head = md
    ? `**Swarm, 3 hosts, dockerd ${r.docker.server}**, ${m.nproc} vCPU, kernel ${m.kernel}, node ${m.node}, vxnet ${r.source.commit?.slice(0, 7) ?? '?'}${r.source.dirty ? '+dirty' : ''}, ${r.timestamp}`
    : `vxnet vs swarm overlay — 3 hosts, dockerd ${r.docker.server}, ${m.nproc} CPUs, kernel ${m.kernel}, ${r.timestamp}, load ${m.loadavgAtStart.join(' ')}`;
  const lines = [head, ''];
  lines.push(md ? markdownTable(HEADER, rows(r)) : textTable(HEADER, rows(r)));
  for (const n of notes(r)) lines.push(md ? `\n${n}` : `  ${n}`);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Main

async function runBench(opts: Options, env: Partial<Env>) {
  const started = Date.now();
  const machine = await machineInfo();
  const source = await sourceRevision(REPO_ROOT);
  const e = await setUp(env);
  const [manager, worker] = e.hosts;
  const docker = await dockerVersions(manager);
  const plugin = JSON.parse(await manager.dockerOk(['plugin', 'inspect', '-f', '{{json .Settings.Env}}', PLUGIN])) as string[];
  const dockerRun = [await benchDockerRun(worker, 'worker', opts), await benchDockerRun(manager, 'manager', opts)];
  const warmRun = opts.warmRuns > 0 ? await benchWarmRun(e, worker, opts) : null;
  const ping = await benchPing(e, opts);
  const services = opts.services > 0 ? await benchServices(e, opts) : null;
  return {
    ...resultHeader('swarm', started, opts, machine),
    docker,
    source,
    hosts: e.hosts.map((h) => h.name),
    manager: manager.name,
    underlay: Object.fromEntries([ETCD_HOST, ...HOSTS].map((h) => [h.name, h.ip])),
    networks: Object.fromEntries(KINDS.map((k) => [k, { name: NET[k].name, subnet: NET[k].subnet, create: ['network', 'create', ...NET[k].create, '--attachable', '--subnet', NET[k].subnet, NET[k].name].join(' ') }])),
    plugin: { name: PLUGIN, build: 'docker-plugin/build.sh --no-build --no-create (dist/ of this run)', env: plugin },
    units: 'ms unless named otherwise (ping: µs); percentiles interpolate between closest ranks',
    dockerRun,
    warmRun,
    ping,
    services,
  };
}

async function main(): Promise<number> {
  const pre = preflight(parseArgs, USAGE, 'swarm bench', MAIN_JS);
  if ('code' in pre) return pre.code;
  const opts = pre.opts;
  const underlayExisted = fs.existsSync('/run/netns/vxt-ul');
  const env: Partial<Env> = {};
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
      await cleanUp(env);
      // The underlay goes only if this run made it, and only when no host is left on it.
      if (!underlayExisted) await underlayDown().catch(() => undefined);
    },
  );
}

void main().then((code) => process.exit(code));
