// Many networks on one host (issue 12 item 5): N vxnet networks, each with one container, on one
// simulated host A with dockerd 20.10 and the built driver, over an etcd in a host of its own; a
// second host B (dockerd 20.10, driver) joins only the 1st and the Nth network. Measures whether
// anything grows with N:
//   1. `docker network create` time for every network (first vs last tenth), and the driver's
//      VmRSS every --rss-every networks;
//   2. same-host ping RTT between two containers of the 1st network vs two of the Nth, and of a
//      Docker bridge network next to them, interleaved per round (ABC, rotating); and cross-host
//      RTT from B's container to A's on the 1st vs the Nth network (through A's VXLAN device,
//      bridge and firewall holding N networks), interleaved the same way;
//   3. `docker run --rm … sh -c true` on the 1st vs the Nth network, interleaved;
//   4. the firewall: number of iptables rules (filter + nat) and ipset entries at N.
// Prints text and Markdown tables, writes bench/results/many-networks-<N>.json. A benchmark, not a
// test: nothing asserts a time.
//
//   npm run build && node dist/bench/many-networks.js [--networks N] [--rounds R] …
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Host } from '../test/helpers/hosts';
import { describeFailure, upHost, downHost, underlayDown, REPO_ROOT } from '../test/helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../test/helpers/image';
import { Driver, startDriver, MAIN_JS } from '../test/helpers/vxnet-in-host';
import { etcdDriverEnv } from './lib/etcd-driver';
import { HostEtcd, startEtcdInHost } from '../test/helpers/etcd-in-host';
import { summarize, rounded, paired, textTable, markdownTable, fmt, Summary } from './lib/stats';
import { log, nowMs, round1, intArg, eachFlag, preflight, runWithCleanup } from './lib/runner';
import { memoryOf, MemoryKb, dockerVersions, machineInfo, sourceRevision, resultHeader } from './lib/machine';
import { logTail } from './lib/driver-log';

interface Options {
  networks: number;
  rounds: number;
  pings: number;
  runs: number;
  parallel: number;
  rssEvery: number;
  out: string | null;
}

const ETCD_HOST = { name: 'vxt-b6', ip: '172.31.254.106' };
const HOST_A = { name: 'vxt-b5', ip: '172.31.254.105' };
const HOST_B = { name: 'vxt-b7', ip: '172.31.254.107' };
const ETCD_PREFIX = '/vxnet-bench-many/';

const USAGE = `Usage: node dist/bench/many-networks.js [options]     (build first: npm run build)

  --networks N     vxnet networks, one container each (default 200; the issue asks for 1000)
  --rounds R       ping rounds (default 6), each: 1st network, Nth network, Docker bridge, rotating
  --pings K        pings per network per round (default 50, 20 ms apart)
  --runs M         docker run --rm per network (1st, Nth), interleaved (default 10)
  --parallel P     containers started at once while filling (default 4; not timed)
  --rss-every E    driver VmRSS sample every E networks (default 100)
  --out FILE       results file (default bench/results/many-networks-<N>.json)

Needs root. Creates hosts ${ETCD_HOST.name} (etcd), ${HOST_A.name} and ${HOST_B.name} (dockerd 20.10 and the built driver,
${HOST_A.ip} and ${HOST_B.ip}), removes them at the end.`;

function parseArgs(argv: string[]): Options {
  const o: Partial<Options> = {};
  eachFlag(argv, USAGE, (flag, next) => {
    switch (flag) {
      case '--networks': o.networks = intArg(flag, next(), 2); break;
      case '--rounds': o.rounds = intArg(flag, next(), 1); break;
      case '--pings': o.pings = intArg(flag, next(), 1); break;
      case '--runs': o.runs = intArg(flag, next(), 1); break;
      case '--parallel': o.parallel = intArg(flag, next(), 1); break;
      case '--rss-every': o.rssEvery = intArg(flag, next(), 1); break;
      case '--out': o.out = next() ?? null; break;
      default: throw new Error(`unknown argument ${flag} (see --help)`);
    }
  });
  const networks = o.networks ?? 200;
  // vxnet IPAM --subnet per network: 10.160.0.0/24 onwards, 256 per second octet.
  if (networks > 4 * 256) throw new Error('--networks: at most 1024 (subnets 10.160.0.0/24 to 10.163.255.0/24)');
  return {
    networks,
    rounds: o.rounds ?? 6,
    pings: o.pings ?? 50,
    runs: o.runs ?? 10,
    parallel: o.parallel ?? 4,
    rssEvery: o.rssEvery ?? 100,
    out: o.out ?? null,
  };
}

const netName = (i: number): string => `vxt-mn-${i}`;
const subnet = (i: number): string => `10.${160 + (i >> 8)}.${i & 255}.0/24`;
const BRIDGE_NET = { name: 'vxt-mn-bridge', subnet: '10.159.0.0/24' };

async function timed(host: Host, args: string[]): Promise<number> {
  const t0 = nowMs();
  const r = await host.docker(args, { timeoutMs: 180_000 });
  if (r.code !== 0) throw describeFailure(`docker ${args.join(' ')}`, r);
  return nowMs() - t0;
}

function createArgs(i: number): string[] {
  return ['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', subnet(i), netName(i)];
}

function sleeperArgs(name: string, net: string): string[] {
  return ['run', '-d', '--name', name, '--network', net, TEST_IMAGE, 'sleep', '86400'];
}

/** Per-packet RTTs (ms) of `ping -c K` from container `from` to `ip`. */
async function pingRtts(host: Host, from: string, ip: string, count: number): Promise<number[]> {
  const r = await host.docker(['exec', from, 'ping', '-c', String(count), '-i', '0.02', '-W', '1', ip], { timeoutMs: 120_000 });
  if (r.code !== 0) throw describeFailure(`ping from ${from} to ${ip}`, r);
  return [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
}

async function containerIp(host: Host, net: string, c: string): Promise<string> {
  return host.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, c]);
}

interface FillResult {
  /** Networks made (fewer than asked when the machine ran low on memory). */
  count: number;
  createMs: number[];
  rss: Array<{ networks: number } & MemoryKb>;
}

/** The fill stops below this much available memory: a shared machine must not run out. */
const MIN_AVAILABLE_KB = 3 * 1024 * 1024;

function memAvailableKb(): number {
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) : Infinity;
}

async function fill(host: Host, opts: Options, pid: number): Promise<FillResult> {
  const createMs: number[] = [];
  const rss: FillResult['rss'] = [{ networks: 0, ...memoryOf(pid) }];
  const t0 = Date.now();
  let count = 0;
  for (let start = 1; start <= opts.networks; start += opts.parallel) {
    if (memAvailableKb() < MIN_AVAILABLE_KB) {
      log(`stopping at ${count} networks: less than ${MIN_AVAILABLE_KB / 1024 / 1024} GB of memory available`);
      break;
    }
    const batch = Array.from({ length: Math.min(opts.parallel, opts.networks - start + 1) }, (_, k) => start + k);
    // Networks one at a time (timed), then their containers in parallel (not timed).
    for (const i of batch) {
      createMs.push(await timed(host, createArgs(i)));
    }
    await Promise.all(batch.map((i) => timed(host, sleeperArgs(`vxt-mn-c${i}`, netName(i)))));
    const done = batch[batch.length - 1];
    count = done;
    if (done % opts.rssEvery < opts.parallel || done === opts.networks) {
      rss.push({ networks: done, ...memoryOf(pid) });
      log(`${done}/${opts.networks} networks with a container (${Math.round((Date.now() - t0) / 1000)} s), driver VmRSS ${Math.round(rss[rss.length - 1].rssKb / 1024)} MB`);
    }
  }
  return { count, createMs, rss };
}

interface PingTarget { from: string; host: Host; ip: string }

/**
 * Ping RTTs of several targets, interleaved per round in rotating order so that drift on the
 * shared machine falls on every side alike. Returns µs summaries per side and per-round medians.
 */
async function interleavedRtt<S extends string>(opts: Options, targets: Record<S, PingTarget>) {
  const sides = Object.keys(targets) as S[];
  const perRound = Object.fromEntries(sides.map((s) => [s, [] as number[]])) as Record<S, number[]>;
  const all = Object.fromEntries(sides.map((s) => [s, [] as number[]])) as Record<S, number[]>;
  for (const s of sides) await pingRtts(targets[s].host, targets[s].from, targets[s].ip, 5); // warm-up: ARP, caches
  for (let r = 0; r < opts.rounds; r++) {
    const order = sides.map((_, k) => sides[(k + r) % sides.length]);
    for (const s of order) {
      const rtts = await pingRtts(targets[s].host, targets[s].from, targets[s].ip, opts.pings);
      all[s].push(...rtts);
      perRound[s].push(summarize(rtts).p50);
    }
  }
  const usPerPacket = Object.fromEntries(sides.map((s) => [s, rounded(summarize(all[s].map((x) => x * 1000)), 1)])) as Record<S, Summary>;
  const ratio = (a: S, b: S) => ({
    medianPairedRatio: paired(perRound[a], perRound[b], 3).medianPairedRatio,
    ofMedians: Math.round((summarize(all[a]).p50 / summarize(all[b]).p50) * 1000) / 1000,
  });
  return { usPerPacket, ratio };
}

async function benchRtt(opts: Options, targets: Record<'first' | 'last' | 'bridge', PingTarget>) {
  const { usPerPacket, ratio } = await interleavedRtt(opts, targets);
  const lastFirst = ratio('last', 'first');
  return {
    usPerPacket,
    lastOverFirst: lastFirst.medianPairedRatio,
    lastOverFirstOfMedians: lastFirst.ofMedians,
    vxnetFirstOverBridge: ratio('first', 'bridge').medianPairedRatio,
  };
}

async function benchCrossHostRtt(opts: Options, targets: Record<'first' | 'last', PingTarget>) {
  const { usPerPacket, ratio } = await interleavedRtt(opts, targets);
  const lastFirst = ratio('last', 'first');
  return { usPerPacket, lastOverFirst: lastFirst.medianPairedRatio, lastOverFirstOfMedians: lastFirst.ofMedians };
}

async function benchRuns(host: Host, opts: Options, n: number) {
  const args = (i: number): string[] => ['run', '--rm', '--network', netName(i), TEST_IMAGE, 'sh', '-c', 'true'];
  await timed(host, args(1));
  await timed(host, args(n));
  const first: number[] = [];
  const last: number[] = [];
  for (let r = 0; r < opts.runs; r++) {
    if (r % 2 === 0) {
      first.push(await timed(host, args(1)));
      last.push(await timed(host, args(n)));
    } else {
      last.push(await timed(host, args(n)));
      first.push(await timed(host, args(1)));
    }
  }
  const p = paired(last, first, 1);
  return { lastMs: p.a, firstMs: p.b, lastOverFirst: p.ratioOfMedians, medianPairedRatio: p.medianPairedRatio, samplesMs: { first: first.map(round1), last: last.map(round1) } };
}

async function firewallSize(host: Host) {
  const rules = `${await host.execOk(['iptables', '-w', '-S'])}\n${await host.execOk(['iptables', '-w', '-t', 'nat', '-S'])}`.split('\n').filter((l) => l.startsWith('-A '));
  const sets = (await host.execOk(['ipset', 'save'])).split('\n').filter((l) => l.startsWith('add vxnet-'));
  return {
    iptablesRules: rules.length,
    vxnetRules: rules.filter((l) => /VXNET/.test(l)).length,
    rulesNamingABridge: rules.filter((l) => /vxb-\d/.test(l)).length,
    forwardChainRules: rules.filter((l) => l.startsWith('-A FORWARD ')).length,
    setEntries: sets.length,
  };
}

function tenth(xs: number[], which: 'first' | 'last'): Summary {
  const k = Math.max(1, Math.floor(xs.length / 10));
  return rounded(summarize(which === 'first' ? xs.slice(0, k) : xs.slice(-k)), 1);
}

interface Env {
  etcdHost: Host | null;
  etcd: HostEtcd | null;
  hosts: Host[];
  drivers: Driver[];
}

async function startVxnetHost(env: Env, spec: { name: string; ip: string }): Promise<{ host: Host; driver: Driver }> {
  const host = await upHost(spec.name, spec.ip, { docker: '20' });
  env.hosts.push(host);
  await ensureTestImage(host);
  const driver = await startDriver(host, etcdDriverEnv((env.etcd as HostEtcd).endpoint, ETCD_PREFIX));
  env.drivers.push(driver);
  return { host, driver };
}

async function runBench(opts: Options, env: Env) {
  const started = Date.now();
  const machine = await machineInfo();
  const source = await sourceRevision(REPO_ROOT);
  env.etcdHost = await upHost(ETCD_HOST.name, ETCD_HOST.ip, { docker: null });
  env.etcd = await startEtcdInHost(env.etcdHost);
  const { host, driver } = await startVxnetHost(env, HOST_A);
  const docker = await dockerVersions(host);
  const pid = driver.proc.pid as number;
  log(`filling ${opts.networks} networks on ${host.name}, ${opts.parallel} containers at a time`);
  const filled = await fill(host, opts, pid);
  const n = filled.count;

  // A second container on the 1st and Nth networks, and two on a Docker bridge network: ping pairs.
  await host.dockerOk(['network', 'create', '--subnet', BRIDGE_NET.subnet, BRIDGE_NET.name]);
  for (const [name, net] of [['vxt-mn-p1', netName(1)], ['vxt-mn-pN', netName(n)], ['vxt-mn-b1', BRIDGE_NET.name], ['vxt-mn-b2', BRIDGE_NET.name]]) {
    await host.dockerOk(sleeperArgs(name, net));
  }
  // Host B joins the 1st and the Nth network (the same logical networks through etcd).
  const { host: hostB } = await startVxnetHost(env, HOST_B);
  for (const [i, name] of [[1, 'vxt-mn-r1'], [n, 'vxt-mn-rN']] as Array<[number, string]>) {
    await hostB.dockerOk(createArgs(i));
    await hostB.dockerOk(sleeperArgs(name, netName(i)));
  }
  const ipOf = (i: number): Promise<string> => containerIp(host, netName(i), `vxt-mn-c${i}`);
  const targets = {
    first: { host, from: 'vxt-mn-p1', ip: await ipOf(1) },
    last: { host, from: 'vxt-mn-pN', ip: await ipOf(n) },
    bridge: { host, from: 'vxt-mn-b1', ip: await containerIp(host, BRIDGE_NET.name, 'vxt-mn-b2') },
  };
  log(`same-host ping: ${opts.rounds} rounds × ${opts.pings} per network`);
  const rtt = await benchRtt(opts, targets);
  log(`cross-host ping (${hostB.name} → ${host.name}): ${opts.rounds} rounds × ${opts.pings} per network`);
  const crossHostRtt = await benchCrossHostRtt(opts, {
    first: { host: hostB, from: 'vxt-mn-r1', ip: targets.first.ip },
    last: { host: hostB, from: 'vxt-mn-rN', ip: targets.last.ip },
  });
  log(`docker run --rm: ${opts.runs} per network (1st, ${n}th)`);
  const runs = await benchRuns(host, opts, n);
  const firewall = await firewallSize(host);
  const atEnd = memoryOf(pid);
  return {
    ...resultHeader('many-networks', started, opts, machine),
    docker,
    source,
    hosts: { a: { name: host.name, ip: host.ip }, b: { name: hostB.name, ip: hostB.ip }, store: 'etcd' },
    networksMade: n,
    units: 'ms unless named otherwise (RTT in µs); percentiles interpolate between closest ranks',
    networkCreateMs: { all: rounded(summarize(filled.createMs), 1), firstTenth: tenth(filled.createMs, 'first'), lastTenth: tenth(filled.createMs, 'last'), samples: filled.createMs.map(round1) },
    rtt,
    crossHostRtt,
    dockerRunRm: runs,
    firewall,
    driverRss: [...filled.rss, { networks: n, ...atEnd }],
  };
}

type Results = Awaited<ReturnType<typeof runBench>>;

function rows(r: Results): Array<Array<string | number>> {
  const n = r.networksMade;
  const mbOf = (kb: number): string => fmt(kb / 1024, 1);
  return [
    [`ping RTT, network 1 (µs, median / p90)`, `${fmt(r.rtt.usPerPacket.first.p50, 0)} / ${fmt(r.rtt.usPerPacket.first.p90, 0)}`],
    [`ping RTT, network ${n} (µs, median / p90)`, `${fmt(r.rtt.usPerPacket.last.p50, 0)} / ${fmt(r.rtt.usPerPacket.last.p90, 0)}`],
    [`ping RTT, Docker bridge (µs, median / p90)`, `${fmt(r.rtt.usPerPacket.bridge.p50, 0)} / ${fmt(r.rtt.usPerPacket.bridge.p90, 0)}`],
    [`RTT network ${n} ÷ network 1 (median of per-round ratios)`, fmt(r.rtt.lastOverFirst, 3)],
    [`RTT vxnet network 1 ÷ Docker bridge (median of per-round ratios)`, fmt(r.rtt.vxnetFirstOverBridge, 3)],
    [`cross-host ping RTT, network 1 (µs, median / p90)`, `${fmt(r.crossHostRtt.usPerPacket.first.p50, 0)} / ${fmt(r.crossHostRtt.usPerPacket.first.p90, 0)}`],
    [`cross-host ping RTT, network ${n} (µs, median / p90)`, `${fmt(r.crossHostRtt.usPerPacket.last.p50, 0)} / ${fmt(r.crossHostRtt.usPerPacket.last.p90, 0)}`],
    [`cross-host RTT network ${n} ÷ network 1 (median of per-round ratios)`, fmt(r.crossHostRtt.lastOverFirst, 3)],
    [`docker run --rm, network 1 (ms, median)`, fmt(r.dockerRunRm.firstMs.p50, 0)],
    [`docker run --rm, network ${n} (ms, median)`, fmt(r.dockerRunRm.lastMs.p50, 0)],
    [`docker run network ${n} ÷ network 1`, fmt(r.dockerRunRm.lastOverFirst, 2)],
    [`docker network create, first tenth (ms, median)`, fmt(r.networkCreateMs.firstTenth.p50, 0)],
    [`docker network create, last tenth (ms, median)`, fmt(r.networkCreateMs.lastTenth.p50, 0)],
    [`driver VmRSS at start / at ${n} networks (MB)`, `${mbOf(r.driverRss[0].rssKb)} / ${mbOf(r.driverRss[r.driverRss.length - 1].rssKb)}`],
    [`iptables rules (filter+nat) / vxnet's / naming a bridge`, `${r.firewall.iptablesRules} / ${r.firewall.vxnetRules} / ${r.firewall.rulesNamingABridge}`],
    [`ipset entries`, r.firewall.setEntries],
  ];
}

async function main(): Promise<number> {
  const pre = preflight(parseArgs, USAGE, 'many-networks bench', MAIN_JS);
  if ('code' in pre) return pre.code;
  const opts = pre.opts;
  const env: Env = { etcdHost: null, etcd: null, hosts: [], drivers: [] };
  const underlayExisted = fs.existsSync('/run/netns/vxt-ul');
  return runWithCleanup(
    async () => {
      let results: Results;
      try {
        results = await runBench(opts, env);
      } catch (err) {
        for (const d of env.drivers) process.stderr.write(`last driver log lines (${d.logFile}):\n${logTail(d.logFile, 20)}\n`);
        throw err;
      }
      const file = opts.out ?? path.join(REPO_ROOT, 'bench', 'results', `many-networks-${opts.networks}.json`);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
      const header = ['', `${results.networksMade} networks, dockerd ${results.docker.server}`];
      process.stdout.write(`\n${textTable(header, rows(results))}\n\n--- Markdown ---\n\n${markdownTable(header, rows(results))}\n\n`);
      log(`results: ${path.relative(process.cwd(), file) || file}`);
      return 0;
    },
    async () => {
      for (const d of env.drivers) await d.stop().catch(() => undefined);
      // Stopping a host kills its containers and dockerd at once: no per-network teardown. With
      // 1,000 containers that takes host.sh minutes (96 s on a quiet machine, more when loaded).
      for (const h of [...env.hosts].reverse()) await downHost(h.name, 30 * 60_000).catch((e: unknown) => log(`downHost ${h.name}: ${(e as Error).message}`));
      await env.etcd?.stop().catch(() => undefined);
      if (env.etcdHost) await downHost(env.etcdHost.name).catch(() => undefined);
      if (!underlayExisted) await underlayDown().catch(() => undefined);
    },
  );
}

void main().then((code) => process.exit(code));
