// Address allocations and driver memory across hosts (issue 13, rows 5 and 6), in one run on
// three simulated hosts without dockerd and an etcd in a fourth (as bench/multi-host.ts):
//   1. burst: each host's driver gets --allocs concurrent RequestAddress on one /16 (--concurrency
//      in flight per host), then every address is released. Run for the built driver and, with
//      --baseline DIST, for another build (e.g. the previous commit's dist/), interleaved A B B A
//      over --rounds, each round on a fresh etcd prefix: allocations/s, driver and etcd CPU,
//      distinct addresses (a duplicate fails the run).
//   2. memory: --endpoints endpoint records (RequestAddress + CreateEndpoint, spread over the three
//      hosts) on one network that has a joined container on every host, so every driver programs
//      a peer entry for each remote endpoint. Each driver's VmRSS, and its peer diff + program
//      passes ("peer entries synced" in its log) while the records arrive.
// A benchmark, not a test: nothing asserts a time (only that no address was handed out twice).
//
//   npm run build && node dist/bench/allocations.js [--baseline /tmp/base/dist/src/main.js] …
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Host, upHost, downHost, underlayDown, run, REPO_ROOT } from '../test/helpers/hosts';
import { Driver, startDriver, socketFromOutside, MAIN_JS } from '../test/helpers/vxnet-in-host';
import { etcdDriverEnv } from './lib/etcd-driver';
import { HostEtcd, startEtcdInHost } from '../test/helpers/etcd-in-host';
import { PluginClient, dockerId } from './lib/plugin-client';
import { readLoggedCalls, logTail } from './lib/driver-log';
import { EndpointMemory, endpointMemory, inFlight, ENDPOINT_CONTAINERS } from './lib/endpoint-memory';
import { machineInfo, sourceRevision, resultHeader, cpuSecondsOf } from './lib/machine';
import { summarize, rounded, Summary, textTable, markdownTable, fmt } from './lib/stats';
import { log, sleep, nowMs, intArg, eachFlag, preflight, runWithCleanup, round1 } from './lib/runner';

interface Options {
  allocs: number;
  concurrency: number;
  rounds: number;
  baseline: string | null;
  endpoints: number;
  cpuProf: string | null;
  /** node/V8 flags for the drivers of each build (e.g. --max-semi-space-size=4 against node's default) */
  nodeArgs: Record<Build, string[]>;
  out: string;
}

const USAGE = `Usage: node dist/bench/allocations.js [options]     (build first: npm run build)

  --allocs N         RequestAddress calls per host in a burst (default 1000)
  --concurrency N    calls in flight per host (default 16)
  --rounds N         bursts per build (default 2; with --baseline: A B B A …)
  --baseline FILE    another build's main.js to compare with (e.g. the previous commit's)
  --endpoints N      endpoint records over the 3 hosts in the memory part (default 10000; 0 skips it)
  --cpu-prof DIR     drivers write V8 CPU profiles to DIR/<build>-<round>/ (node --cpu-prof)
  --node-arg FLAG    a node/V8 flag for the new build's drivers (repeatable)
  --baseline-node-arg FLAG   the same for the baseline's (two flag sets of one build: --baseline dist/src/main.js)
  --out FILE         results file (default bench/results/allocations.json)

Needs root. Creates hosts vxt-b20 (etcd) and vxt-b21..23 (172.31.254.120-123) without dockerd,
runs the driver in each, removes everything at the end.`;

function parseArgs(argv: string[]): Options {
  const o: Options = { allocs: 1000, concurrency: 16, rounds: 2, baseline: null, endpoints: 10000, cpuProf: null, nodeArgs: { new: [], baseline: [] }, out: path.join(REPO_ROOT, 'bench/results/allocations.json') };
  eachFlag(argv, USAGE, (flag, next) => {
    switch (flag) {
      case '--allocs': o.allocs = intArg(flag, next(), 1); break;
      case '--concurrency': o.concurrency = intArg(flag, next(), 1); break;
      case '--rounds': o.rounds = intArg(flag, next(), 1); break;
      case '--baseline': o.baseline = path.resolve(next() ?? ''); break;
      case '--endpoints': o.endpoints = intArg(flag, next(), 0); break;
      case '--cpu-prof': o.cpuProf = path.resolve(next() ?? ''); break;
      case '--node-arg': o.nodeArgs.new.push(next() ?? ''); break;
      case '--baseline-node-arg': o.nodeArgs.baseline.push(next() ?? ''); break;
      case '--out': o.out = path.resolve(next() ?? o.out); break;
      default: throw new Error(`unknown argument ${flag} (see --help)`);
    }
  });
  if (o.allocs * 3 > 65000) throw new Error('--allocs: at most 21666 per host fit in the /16');
  if (o.endpoints > 65000) throw new Error('--endpoints: at most 65000 fit in the /16');
  if (o.baseline && !fs.existsSync(o.baseline)) throw new Error(`--baseline ${o.baseline} does not exist`);
  return o;
}

const ETCD_HOST = { name: 'vxt-b20', ip: '172.31.254.120' };
const HOSTS = [
  { name: 'vxt-b21', ip: '172.31.254.121' },
  { name: 'vxt-b22', ip: '172.31.254.122' },
  { name: 'vxt-b23', ip: '172.31.254.123' },
];
const BURST_POOL = '10.241.0.0/16';
const SPACE = 'vxnet-local';

type Build = 'new' | 'baseline';

interface Env {
  etcdHost: Host;
  etcd: HostEtcd;
  hosts: Host[];
  drivers: Driver[];
}

async function startDrivers(env: Env, mainJs: string, prefix: string, nodeArgs: string[] = []): Promise<Driver[]> {
  const drivers: Driver[] = [];
  for (const h of env.hosts) {
    // A fresh data directory per run: nothing of the previous build's state carries over.
    fs.rmSync(path.join(h.stateDir, 'vxnet-data'), { recursive: true, force: true });
    drivers.push(
      await startDriver(
        h,
        etcdDriverEnv(env.etcd.endpoint, prefix),
        mainJs,
        nodeArgs,
      ),
    );
  }
  env.drivers = drivers;
  return drivers;
}

async function stopDrivers(env: Env): Promise<void> {
  for (const d of env.drivers.splice(0)) await d.stop();
}

async function ok(client: PluginClient, method: string, body: unknown): Promise<Record<string, unknown>> {
  const r = await client.raw(method, body);
  if (r.status !== 200 || r.body.Err || r.body.Error) throw new Error(`${method}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

// ---------------------------------------------------------------------------------------------
// 1. burst

interface Burst {
  build: Build;
  round: number;
  allocated: number;
  distinct: number;
  duplicates: number;
  errors: string[];
  seconds: number;
  allocationsPerSecond: number;
  requestMs: Summary;
  requestDriverMs: Summary;
  /** CPU seconds during the burst: each driver, etcd; and per allocation (ms) */
  cpuSeconds: { drivers: number[]; etcd: number };
  driverCpuMsPerAllocation: number;
  releasesPerSecond: number;
  releaseErrors: number;
}

async function burst(env: Env, opts: Options, build: Build, round: number): Promise<Burst> {
  const mainJs = build === 'new' ? MAIN_JS : (opts.baseline as string);
  // node refuses --cpu-prof in NODE_OPTIONS: it goes on the driver's command line.
  const prof = opts.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${path.join(opts.cpuProf, `${build}-${round}`)}`] : [];
  const drivers = await startDrivers(env, mainJs, `/vxa-${round}-${build}/`, [...opts.nodeArgs[build], ...prof]);
  const clients = env.hosts.map((h) => new PluginClient(socketFromOutside(h), opts.concurrency));
  try {
    const poolIds: string[] = [];
    for (const c of clients) poolIds.push(String((await ok(c, 'IpamDriver.RequestPool', { AddressSpace: SPACE, Pool: BURST_POOL, SubPool: '', Options: {}, V6: false })).PoolID));
    const got: Array<{ ip: string; host: number; ms: number }> = [];
    const errors: string[] = [];
    const pids = [...drivers.map((d) => d.proc.pid!), env.etcd.proc.pid!];
    const cpu0 = pids.map(cpuSecondsOf);
    const windowStart = Date.now();
    const t0 = nowMs();
    await Promise.all(clients.map((c, h) =>
      inFlight(opts.allocs, opts.concurrency, async () => {
        const r = await c.raw('IpamDriver.RequestAddress', { PoolID: poolIds[h], Address: '', Options: null });
        if (r.status === 200 && typeof r.body.Address === 'string') got.push({ ip: r.body.Address.split('/')[0], host: h, ms: r.ms });
        else errors.push(`${env.hosts[h].name}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
      }),
    ));
    const seconds = (nowMs() - t0) / 1000;
    const windowEnd = Date.now();
    const cpu = pids.map((p, i) => cpuSecondsOf(p) - cpu0[i]);
    const distinct = new Set(got.map((g) => g.ip)).size;
    let releaseErrors = 0;
    const t1 = nowMs();
    await Promise.all(clients.map((c, h) => {
      const mine = got.filter((g) => g.host === h);
      return inFlight(mine.length, opts.concurrency, async (k) => {
        const r = await c.raw('IpamDriver.ReleaseAddress', { PoolID: poolIds[h], Address: mine[k].ip });
        if (r.status !== 200) releaseErrors++;
      });
    }));
    const releaseSeconds = (nowMs() - t1) / 1000;
    for (let h = 0; h < clients.length; h++) await ok(clients[h], 'IpamDriver.ReleasePool', { PoolID: poolIds[h] });
    await sleep(200); // last log lines
    const driverMs = drivers.flatMap((d) =>
      readLoggedCalls(d.logFile).filter((c) => c.call === 'IpamDriver.RequestAddress' && c.time >= windowStart && c.time <= windowEnd + 1).map((c) => c.ms),
    );
    const driverCpu = cpu.slice(0, -1);
    const r: Burst = {
      build,
      round,
      allocated: got.length,
      distinct,
      duplicates: got.length - distinct,
      errors: errors.slice(0, 10),
      seconds: round1(seconds),
      allocationsPerSecond: Math.round(got.length / seconds),
      requestMs: rounded(summarize(got.map((g) => g.ms)), 2),
      requestDriverMs: rounded(summarize(driverMs), 2),
      cpuSeconds: { drivers: driverCpu.map(round1), etcd: round1(cpu[cpu.length - 1]) },
      driverCpuMsPerAllocation: Math.round((driverCpu.reduce((a, b) => a + b, 0) / Math.max(1, got.length)) * 1e5) / 100,
      releasesPerSecond: Math.round((got.length - releaseErrors) / releaseSeconds),
      releaseErrors,
    };
    log(`  ${build} round ${round}: ${r.allocationsPerSecond}/s, ${r.allocated} allocated, ${r.distinct} distinct, ${errors.length} errors, driver CPU ${r.driverCpuMsPerAllocation} ms each`);
    return r;
  } finally {
    for (const c of clients) c.close();
    await stopDrivers(env);
  }
}

// ---------------------------------------------------------------------------------------------
// 2. memory with many endpoint records (bench/lib/endpoint-memory.ts)

async function memory(env: Env, opts: Options): Promise<EndpointMemory> {
  const prefix = '/vxa-mem/';
  const drivers = await startDrivers(env, MAIN_JS, prefix, opts.nodeArgs.new);
  const result = await endpointMemory({ hosts: env.hosts, drivers, endpoints: opts.endpoints, restart: (h) => startDriver(h, etcdDriverEnv(env.etcd.endpoint, prefix), MAIN_JS, opts.nodeArgs.new) });
  env.drivers = drivers;
  return result;
}

// ---------------------------------------------------------------------------------------------
// Output

type Results = Awaited<ReturnType<typeof runBench>>;

function byBuild(bursts: Burst[], build: Build): { perSecond: number; cpuMs: number; p50: number } | null {
  const b = bursts.filter((x) => x.build === build);
  if (b.length === 0) return null;
  const med = (v: number[]): number => summarize(v).p50;
  return { perSecond: Math.round(med(b.map((x) => x.allocationsPerSecond))), cpuMs: med(b.map((x) => x.driverCpuMsPerAllocation)), p50: med(b.map((x) => x.requestMs.p50)) };
}

function report(r: Results, md: boolean): string {
  const lines: string[] = [];
  const t = (title: string, header: string[], rows: Array<Array<string | number>>): void => {
    lines.push('', md ? `*${title}*` : title, '', md ? markdownTable(header, rows) : textTable(header, rows));
  };
  t(
    `1. ${r.hosts.length} hosts × ${r.options.allocs} concurrent RequestAddress over etcd (${r.options.concurrency} in flight per host), per burst`,
    ['build', 'round', 'alloc/s', 'driver CPU ms/alloc', 'CPU s drivers / etcd', 'round trip p50 / p99 ms', 'allocated / distinct', 'errors', 'releases/s'],
    r.bursts.map((b) => [b.build, b.round, b.allocationsPerSecond, b.driverCpuMsPerAllocation, `${b.cpuSeconds.drivers.join(' + ')} / ${b.cpuSeconds.etcd}`, `${fmt(b.requestMs.p50, 1)} / ${fmt(b.requestMs.p99, 1)}`, `${b.allocated} / ${b.distinct}`, b.errors.length, b.releasesPerSecond]),
  );
  const n = byBuild(r.bursts, 'new');
  const b = byBuild(r.bursts, 'baseline');
  if (n && b) lines.push('', `Median over rounds: new ${n.perSecond}/s vs baseline ${b.perSecond}/s (${(n.perSecond / b.perSecond).toFixed(2)} ×); driver CPU ${n.cpuMs} vs ${b.cpuMs} ms per allocation.`);
  if (r.memory) {
    const m = r.memory;
    t(
      `2. ${m.endpoints} endpoint records over ${r.hosts.length} hosts (${m.perHost.join(' / ')}), one network with a container on every host`,
      ['host', 'RSS start MB', 'RSS with network', `RSS with ${m.endpoints} endpoints`, 'peak MB', 'peer passes', 'peer pass p50 / max ms', 'peers at end'],
      r.hosts.map((h, i) => [h, m.rssMb.atStart[i], m.rssMb.afterNetwork[i], m.rssMb.afterEndpoints[i], m.rssMb.peak[i], m.peerSyncMs[i].n, `${fmt(m.peerSyncMs[i].p50, 1)} / ${fmt(m.peerSyncMs[i].max, 1)}`, m.peersAtEnd[i]]),
    );
    lines.push('', `Records written in ${m.seconds} s. ${m.restart.host}'s driver restarted with every record in the store: serving after ${m.restart.readyMs} ms, first peer pass ${m.restart.firstSyncMs ?? '-'} ms for ${m.restart.peers ?? '-'} peers, RSS ${m.restart.rssMb} MB.`);
  }
  return lines.join('\n');
}

async function runBench(opts: Options, env: Env) {
  const started = Date.now();
  const machine = await machineInfo();
  const source = await sourceRevision(REPO_ROOT);
  log(`hosts ${ETCD_HOST.name} (etcd), ${HOSTS.map((h) => h.name).join(', ')}`);
  env.etcdHost = await upHost(ETCD_HOST.name, ETCD_HOST.ip, { docker: null });
  env.etcd = await startEtcdInHost(env.etcdHost);
  for (const h of HOSTS) {
    const host = await upHost(h.name, h.ip, { docker: null });
    await host.execOk(['sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=1']);
    await host.execOk(['iptables', '-w', '-P', 'FORWARD', 'DROP']);
    env.hosts.push(host);
  }
  const order: Build[] = [];
  for (let i = 0; i < opts.rounds; i++) {
    if (!opts.baseline) order.push('new');
    else order.push(...((i % 2 === 0 ? ['baseline', 'new'] : ['new', 'baseline']) as Build[]));
  }
  log(`1. bursts: ${order.join(' ')}`);
  const bursts: Burst[] = [];
  for (let i = 0; i < order.length; i++) bursts.push(await burst(env, opts, order[i], i + 1));
  const mem = opts.endpoints > 0 ? await memory(env, opts) : null;
  return {
    ...resultHeader('allocations', started, opts, machine),
    source,
    hosts: env.hosts.map((h) => h.name),
    driver: { main: path.relative(REPO_ROOT, MAIN_JS), baseline: opts.baseline, logLevel: 'info', store: 'etcd' },
    bursts,
    summary: { new: byBuild(bursts, 'new'), baseline: byBuild(bursts, 'baseline') },
    memory: mem,
  };
}

async function main(): Promise<number> {
  const pre = preflight(parseArgs, USAGE, 'allocations bench', MAIN_JS);
  if ('code' in pre) return pre.code;
  const opts = pre.opts;
  const underlayExisted = fs.existsSync('/run/netns/vxt-ul');
  const env: Env = { hosts: [], drivers: [] } as unknown as Env;
  return runWithCleanup(
    async () => {
      let results: Results;
      try {
        results = await runBench(opts, env);
      } catch (err) {
        for (const d of env.drivers) {
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
      return results.bursts.every((b) => b.duplicates === 0) ? 0 : 1;
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
