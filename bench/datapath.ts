// Cross-host datapath, every reference in one run: vxnet, Docker's swarm overlay, and the kernel's
// own VXLAN made by hand in the two places a bridge can live (bench/lib/raw-vxlan.ts):
//   vxnet      two containers on a vxnet network over etcd (the driver run in each host)
//   overlay    two containers on an attachable swarm overlay network (dockerd's own driver)
//   vxnet-tracked  the same two containers with vxnet's fast path off (policy-table.ts: conntrack
//              skipped between unpoliced containers), every bridged frame tracked as before it
//   (--profile) vxnet-no-nft, vxnet-accept-first: the same containers with one part of vxnet's
//              path taken away while measured (see VARIANTS)
//   vxnet-bridged  (--fast-path auto, the default) the same two containers with a rule of the
//              user's in DOCKER-USER on both hosts (one that matches none of them): auto suspends
//              the redirect, frames take the bridge and dockerd's chains (`--fast-path on`'s path);
//              the rule's removal brings the blocks back
//   --fast-path MODE  both drivers run with it (default auto, the driver's default; --redirect is
//              --fast-path redirect, on is the bridge's path without the redirect)
//   raw-host   hand-made bridge + VXLAN in the host's namespace, with dockerd's rules in force:
//              what the kernel costs where vxnet's bridge lives
//   raw-ns     hand-made bridge + VXLAN in a namespace of their own: where the overlay's lives,
//              the kernel's limit
// Two simulated hosts with dockerd (20.10 by default) in one swarm, an etcd in a third. Each
// round measures every kind, in an order that rotates from round to round: N pings 2 ms apart
// (per-packet RTT) and one single-stream TCP transfer. The same tools run on every side
// (busybox ping and iperf3 entered into the container's namespace), so only the path differs.
// Prints text and Markdown tables and writes bench/results/datapath.json.
// A benchmark, not a test: nothing asserts a time.
//
//   npm run bench:datapath [-- --rounds N --pings N --tcp-seconds N --docker 20|26 --fast-path auto|redirect|on]
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ChildProcess } from 'node:child_process';
import { Host, upHost, downHost, run, REPO_ROOT } from '../test/helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../test/helpers/image';
import { HostEtcd, startEtcdInHost } from '../test/helpers/etcd-in-host';
import { Driver, startDriver, MAIN_JS } from '../test/helpers/vxnet-in-host';
import { containerIp } from '../test/helpers/docker-inspect';
import { pluginCall } from '../test/helpers/plugin-client';
import { socketFromOutside } from '../test/helpers/vxnet-in-host';
import { eventually } from '../test/helpers/eventually';
import { machineInfo, sourceRevision, resultHeader, dockerVersions } from './lib/machine';
import { summarize, rounded, paired, Summary, textTable, markdownTable, fmt } from './lib/stats';
import { log, intArg, dockerArg, oneOfArg, eachFlag, preflight, runWithCleanup } from './lib/runner';
import { pickTcpTool, startTcpServer, tcpStream, TcpTool } from './lib/tcp-stream';
import { RawOverlay, RawSpec, rawOverlayUp, rawOverlayDown, sh } from './lib/raw-vxlan';

interface Options {
  rounds: number;
  pings: number;
  intervalMs: number;
  tcpSeconds: number;
  profile: boolean;
  fastPath: 'on' | 'redirect' | 'auto';
  docker: '20' | '26';
  out: string;
}

const USAGE = `Usage: node dist/bench/datapath.js [options]     (build first: npm run build)

  --rounds N        rounds; each measures every kind, in a rotating order (default 6)
  --pings N         pings per kind and round (default 500)
  --interval-ms N   between two pings (default 2: back to back enough that CPUs stay awake and
                    the path, not the wake-up from idle, is what is measured)
  --tcp-seconds N   one iperf3 stream per kind and round (default 5; 0 skips TCP)
  --profile         also measure vxnet with its nftables tables deleted and with an ACCEPT first
                    in FORWARD (where its time goes; restored after each measurement)
  --fast-path MODE  both drivers' --fast-path: auto (default, the driver's default; also measures
                    vxnet-bridged: the same containers with a rule in DOCKER-USER, which
                    suspends the redirect), redirect, on
  --redirect        the same as --fast-path redirect
  --docker 20|26    dockerd of both hosts (default 20)
  --out FILE        results file (default bench/results/datapath.json)

Needs root. Creates hosts vxt-dp0 (etcd, 172.31.254.150), vxt-dp1 and vxt-dp2 (dockerd,
172.31.254.151-152) in one swarm, runs the built driver (dist/) in both, removes everything at
the end.`;

function parseArgs(argv: string[]): Options {
  const o: Options = { rounds: 8, pings: 500, intervalMs: 2, tcpSeconds: 5, profile: false, fastPath: 'auto', docker: '20', out: path.join(REPO_ROOT, 'bench/results/datapath.json') };
  eachFlag(argv, USAGE, (flag, next) => {
    switch (flag) {
      case '--rounds': o.rounds = intArg(flag, next(), 1); break;
      case '--pings': o.pings = intArg(flag, next(), 10); break;
      case '--interval-ms': o.intervalMs = intArg(flag, next(), 1); break;
      case '--tcp-seconds': o.tcpSeconds = intArg(flag, next(), 0); break;
      case '--profile': o.profile = true; break;
      case '--redirect': o.fastPath = 'redirect'; break;
      case '--fast-path': o.fastPath = oneOfArg(flag, next(), ['on', 'redirect', 'auto'] as const); break;
      case '--docker': o.docker = dockerArg(next()); break;
      case '--out': o.out = path.resolve(next() ?? o.out); break;
      default: throw new Error(`unknown argument ${flag} (see --help)`);
    }
  });
  return o;
}

const ETCD_HOST = { name: 'vxt-dp0', ip: '172.31.254.150' };
const HOSTS = [
  { name: 'vxt-dp1', ip: '172.31.254.151' },
  { name: 'vxt-dp2', ip: '172.31.254.152' },
];
const TCP_PORT = 5201;
const MTU = 1400;

type Variant = 'vxnet-tracked' | 'vxnet-no-nft' | 'vxnet-accept-first' | 'vxnet-bridged';
type Kind = 'vxnet' | Variant | 'overlay' | 'raw-host' | 'raw-ns';
const BASE_KINDS: Kind[] = ['vxnet', 'vxnet-tracked', 'overlay', 'raw-host', 'raw-ns'];
/** --profile: where vxnet's time goes, by taking one thing away at a time (the same containers). */
const PROFILE_KINDS: Kind[] = ['vxnet-no-nft', 'vxnet-accept-first'];
let KINDS: Kind[] = BASE_KINDS;

/**
 * What a variant takes away on both hosts while it is measured, and how it is put back exactly:
 *   vxnet-tracked       the fast path's hook chain emptied (policy-table.ts): conntrack again
 *   vxnet-no-nft        vxnet's three nftables tables (policy, fast path, anti-spoofing) deleted:
 *                       what their hooks cost every frame
 *   vxnet-accept-first  an ACCEPT for frames between vxnet bridges first in FORWARD: what the way
 *                       through DOCKER-USER to vxnet's isolation rule (physdev match) costs
 *   vxnet-bridged       (--fast-path auto) a rule of the user's first in DOCKER-USER, matching
 *                       none of the containers: the driver sees it and empties its blocks, frames
 *                       take the bridge again (and walk one more rule, as any host with such a
 *                       rule does); deleting it brings the blocks back
 */
const VARIANTS: Record<Variant, { take: (h: Host) => Promise<string[]>; restore: (h: Host, saved: string[]) => Promise<void> }> = {
  'vxnet-tracked': {
    take: async (h) => {
      const chain = await h.execOk(['nft', 'list', 'chain', 'bridge', 'vxnet-policy', 'prerouting']);
      await h.execOk(['nft', 'flush', 'chain', 'bridge', 'vxnet-policy', 'prerouting']);
      return [chain];
    },
    restore: async (h, [chain]) => {
      await h.execOk(['sh', '-c', 'nft flush chain bridge vxnet-policy prerouting && printf "%s" "$1" | nft -f -', 'sh', chain]);
    },
  },
  'vxnet-no-nft': {
    take: async (h) => {
      const tables = [['inet', 'vxnet-policy'], ['bridge', 'vxnet-policy'], ['bridge', 'vxnet-antispoof']];
      const saved: string[] = [];
      for (const t of tables) {
        saved.push(await h.execOk(['nft', 'list', 'table', ...t]));
        await h.execOk(['nft', 'delete', 'table', ...t]);
      }
      return saved;
    },
    restore: async (h, saved) => {
      for (const text of saved) await h.execOk(['sh', '-c', 'printf "%s" "$1" | nft -f -', 'sh', text]);
    },
  },
  'vxnet-bridged': {
    take: async (h) => {
      const t0 = Date.now();
      await h.execOk(['iptables', '-w', '-I', 'DOCKER-USER', '1', ...USER_RULE]);
      await eventually('redirect suspended', async () => (await redirectEntries(h)) === 0, 10_000, 10);
      SWITCH_MS.suspend.push(Date.now() - t0);
      return [];
    },
    restore: async (h) => {
      const t0 = Date.now();
      await h.execOk(['iptables', '-w', '-D', 'DOCKER-USER', ...USER_RULE]);
      // One local and one remote entry (the two containers).
      await eventually('redirect blocks back', async () => (await redirectEntries(h)) >= 2, 10_000, 10);
      SWITCH_MS.resume.push(Date.now() - t0);
    },
  },
  'vxnet-accept-first': {
    take: async (h) => {
      await h.execOk(['iptables', '-w', '-I', 'FORWARD', '1', '-i', 'vxb-+', '-o', 'vxb-+', '-j', 'ACCEPT']);
      return [];
    },
    restore: async (h) => {
      await h.execOk(['iptables', '-w', '-D', 'FORWARD', '-i', 'vxb-+', '-o', 'vxb-+', '-j', 'ACCEPT']);
    },
  },
};

/**
 * vxnet-bridged: ms from the rule's insert (removal) until the host's blocks were seen empty
 * (rebuilt), polled every 10 ms with `tc` (so an upper bound of the driver's reaction).
 */
const SWITCH_MS: { suspend: number[]; resume: number[] } = { suspend: [], resume: [] };

/** A rule of the user's that matches none of the measured frames (TEST-NET-1 source). */
const USER_RULE = ['-s', '192.0.2.1/32', '-j', 'DROP'];

/** Mirred actions in the host's redirect blocks (0: nothing redirected). */
async function redirectEntries(h: Host): Promise<number> {
  const links = JSON.parse(await h.execOk(['ip', '-j', 'link', 'show'])) as Array<{ ifname: string }>;
  let n = 0;
  for (const l of links.filter((x) => x.ifname.startsWith('vxv-'))) n += (await h.execOk(['tc', 'filter', 'show', 'block', l.ifname.slice(4)])).split('mirred').length - 1;
  return n;
}

const isVariant = (k: Kind): k is Variant => k in VARIANTS;
const NET = {
  vxnet: { name: 'vxt-dp-vx', subnet: '10.98.0.0/24' },
  overlay: { name: 'vxt-dp-ov', subnet: '10.98.1.0/24' },
};
const RAW: Record<'raw-host' | 'raw-ns', RawSpec> = {
  'raw-host': { placement: 'host', vni: 10051, tag: 'dh', subnet24: '10.98.2', mtu: MTU },
  'raw-ns': { placement: 'ns', vni: 10052, tag: 'dn', subnet24: '10.98.3', mtu: MTU },
};
const CONTAINER = (kind: 'vxnet' | 'overlay', i: number): string => `vxt-dp-${kind === 'vxnet' ? 'vx' : 'ov'}${i + 1}`;

/** Every kind each round, starting one further each time (A B C D, B C D A, …). */
function order(round: number): Kind[] {
  return KINDS.map((_, i) => KINDS[(i + round) % KINDS.length]);
}

// ---------------------------------------------------------------------------------------------
// Setup and teardown

/** How to run a command on one side of a kind: the prefix entering its namespace, and its address. */
interface Side {
  enter: string[];
  ip: string;
}

interface Env {
  etcdHost: Host;
  etcd: HostEtcd;
  hosts: [Host, Host];
  drivers: Driver[];
  swarm: boolean;
  networks: Array<'vxnet' | 'overlay'>;
  raw: Partial<Record<'raw-host' | 'raw-ns', RawOverlay>>;
  sides: Partial<Record<Kind, [Side, Side]>>;
  servers: ChildProcess[];
  tcpTool: TcpTool;
}

async function containerSide(h: Host, kind: 'vxnet' | 'overlay', name: string): Promise<Side> {
  const pid = (await h.dockerOk(['inspect', '-f', '{{.State.Pid}}', name])).trim();
  return { enter: ['nsenter', '-t', pid, '-n', '--'], ip: await containerIp(h, NET[kind].name, name) };
}

async function setUp(env: Partial<Env>, opts: Options): Promise<Env> {
  env.drivers = [];
  env.networks = [];
  env.raw = {};
  env.sides = {};
  env.servers = [];
  env.swarm = false;
  env.tcpTool = await pickTcpTool();
  log(`hosts ${ETCD_HOST.name} (etcd), ${HOSTS.map((h) => h.name).join(', ')} (dockerd ${opts.docker})`);
  env.etcdHost = await upHost(ETCD_HOST.name, ETCD_HOST.ip, { docker: null });
  env.etcd = await startEtcdInHost(env.etcdHost);
  const hosts: Host[] = [];
  for (const h of HOSTS) hosts.push(await upHost(h.name, h.ip, { docker: opts.docker }));
  env.hosts = [hosts[0], hosts[1]];
  for (const h of env.hosts) {
    await ensureTestImage(h);
    env.drivers.push(await startDriver(h, { VXNET_STORE: 'etcd', VXNET_ETCD_ENDPOINTS: env.etcd.endpoint, VXNET_VTEP_INTERFACE: 'eth0', VXNET_LOG_LEVEL: 'info', VXNET_FAST_PATH: opts.fastPath }));
  }
  const [a, b] = env.hosts;
  await a.dockerOk(['swarm', 'init', '--advertise-addr', a.ip]);
  env.swarm = true;
  const token = await a.dockerOk(['swarm', 'join-token', '-q', 'worker']);
  await b.dockerOk(['swarm', 'join', '--advertise-addr', b.ip, '--token', token, `${a.ip}:2377`]);
  await eventually('both nodes ready', async () => {
    const states = (await a.dockerOk(['node', 'ls', '--format', '{{.Status}}'])).split('\n');
    return states.length === 2 && states.every((s) => s === 'Ready');
  }, 60_000, 500);

  await a.dockerOk(['network', 'create', '-d', 'overlay', '--attachable', '--opt', `com.docker.network.driver.mtu=${MTU}`, '--subnet', NET.overlay.subnet, NET.overlay.name]);
  env.networks.push('overlay');
  for (const h of env.hosts) {
    await h.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', NET.vxnet.subnet, '-o', `com.docker.network.driver.mtu=${MTU}`, NET.vxnet.name]);
  }
  env.networks.push('vxnet');
  for (const kind of ['vxnet', 'overlay'] as const) {
    const sides: Side[] = [];
    for (const [i, h] of env.hosts.entries()) {
      await h.dockerOk(['run', '-d', '--name', CONTAINER(kind, i), '--network', NET[kind].name, TEST_IMAGE, 'sleep', '3600']);
      sides.push(await containerSide(h, kind, CONTAINER(kind, i)));
    }
    env.sides[kind] = [sides[0], sides[1]];
  }
  for (const k of KINDS) if (isVariant(k)) env.sides[k] = env.sides.vxnet;
  for (const kind of ['raw-host', 'raw-ns'] as const) {
    const r = await rawOverlayUp(env.hosts, RAW[kind]);
    env.raw[kind] = r;
    env.sides[kind] = [0, 1].map((i) => ({ enter: ['ip', 'netns', 'exec', r.netns[i]], ip: r.ips[i] })) as [Side, Side];
  }
  return env as Env;
}

async function cleanUp(env: Partial<Env>): Promise<void> {
  for (const s of env.servers ?? []) if (s.pid !== undefined && s.exitCode === null) process.kill(s.pid, 'SIGTERM');
  const hosts = env.hosts;
  if (hosts) {
    for (const kind of ['raw-host', 'raw-ns'] as const) await rawOverlayDown(hosts, RAW[kind]).catch((e: unknown) => log(`cleanup ${kind}: ${(e as Error).message}`));
    for (const [i, h] of hosts.entries()) await h.docker(['rm', '-f', CONTAINER('vxnet', i), CONTAINER('overlay', i)]);
    for (const h of hosts) await h.docker(['network', 'rm', NET.vxnet.name]);
    if (env.networks?.includes('overlay')) await hosts[0].docker(['network', 'rm', NET.overlay.name]);
    for (const h of [...hosts].reverse()) await h.docker(['swarm', 'leave', '--force']);
  }
  for (const d of env.drivers ?? []) await d.stop().catch((e: unknown) => log(`cleanup driver: ${(e as Error).message}`));
  if (env.etcd) await env.etcd.stop().catch((e: unknown) => log(`cleanup etcd: ${(e as Error).message}`));
  for (const h of [...HOSTS, ETCD_HOST]) await downHost(h.name).catch((e: unknown) => log(`cleanup ${h.name}: ${(e as Error).message}`));
}

// ---------------------------------------------------------------------------------------------
// Measurements

/** Per-packet RTTs (µs) of `count` pings `intervalMs` apart, and how many were lost. */
async function pingRtts(from: Side, to: Side, count: number, intervalMs: number): Promise<{ rttsUs: number[]; lost: number }> {
  const r = await run(from.enter[0], [...from.enter.slice(1), 'busybox', 'ping', '-c', String(count), '-i', String(intervalMs / 1000), '-W', '2', to.ip], { timeoutMs: count * (intervalMs + 100) + 20_000 });
  const rttsUs = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]) * 1000);
  return { rttsUs, lost: count - rttsUs.length };
}

interface KindResult {
  pingUs: Summary;
  /** p50 of each round */
  pingRoundP50Us: number[];
  lost: number;
  tcpGbps: number[];
  retransmits: Array<number | null>;
  mtu: number;
}

/** Runs `body` with `kind`'s variant in force on both hosts (nothing for the other kinds). */
async function within<T>(env: Env, kind: Kind, body: () => Promise<T>): Promise<T> {
  if (!isVariant(kind)) return body();
  const v = VARIANTS[kind];
  const saved: string[][] = [];
  for (const h of env.hosts) saved.push(await v.take(h));
  try {
    return await body();
  } finally {
    for (const [i, h] of env.hosts.entries()) await v.restore(h, saved[i]);
  }
}

async function measure(env: Env, opts: Options): Promise<Record<Kind, KindResult>> {
  const sides = env.sides as Record<Kind, [Side, Side]>;
  if (opts.tcpSeconds > 0) {
    for (const kind of KINDS.filter((k) => !isVariant(k))) env.servers.push(await startTcpServer(sides[kind][1].enter, env.tcpTool, sides[kind][1].ip, TCP_PORT));
  }
  // The first packets pay ARP and the overlay's peer lookup: not measured.
  for (const kind of KINDS) {
    const w = await pingRtts(sides[kind][0], sides[kind][1], 20, 10);
    if (w.rttsUs.length === 0) throw new Error(`${kind}: no ping answered from ${sides[kind][0].enter.join(' ')} to ${sides[kind][1].ip}`);
  }
  const all = Object.fromEntries(KINDS.map((k) => [k, [] as number[]])) as Record<Kind, number[]>;
  const out = {} as Record<Kind, KindResult>;
  for (const kind of KINDS) {
    const mtu = Number(await sh(sides[kind][0].enter[0], [...sides[kind][0].enter.slice(1), 'cat', '/sys/class/net/eth0/mtu']));
    out[kind] = { pingUs: summarize([0]), pingRoundP50Us: [], lost: 0, tcpGbps: [], retransmits: [], mtu };
  }
  log(`${opts.rounds} rounds: ${opts.pings} pings ${opts.intervalMs} ms apart${opts.tcpSeconds > 0 ? ` + a ${opts.tcpSeconds} s TCP stream (${env.tcpTool})` : ''} per kind`);
  for (let r = 0; r < opts.rounds; r++) {
    for (const kind of order(r)) {
      const p = await within(env, kind, () => pingRtts(sides[kind][0], sides[kind][1], opts.pings, opts.intervalMs));
      all[kind].push(...p.rttsUs);
      out[kind].pingRoundP50Us.push(summarize(p.rttsUs).p50);
      out[kind].lost += p.lost;
    }
    if (opts.tcpSeconds > 0) {
      for (const kind of order(r)) {
        const t = await within(env, kind, () => tcpStream(sides[kind][0].enter, env.tcpTool, sides[kind][1].ip, TCP_PORT, opts.tcpSeconds));
        out[kind].tcpGbps.push(Math.round(t.gbps * 100) / 100);
        out[kind].retransmits.push(t.retransmits);
      }
    }
    log(`  round ${r + 1}: ${KINDS.map((k) => `${k} ${fmt(out[k].pingRoundP50Us[r], 0)} µs${opts.tcpSeconds > 0 ? ` ${fmt(out[k].tcpGbps[r], 2)} Gbit/s` : ''}`).join(', ')}`);
  }
  for (const kind of KINDS) {
    out[kind].pingUs = rounded(summarize(all[kind]), 1);
    out[kind].pingRoundP50Us = out[kind].pingRoundP50Us.map((x) => Math.round(x * 10) / 10);
  }
  return out;
}

/** Where vxnet's bridged frames go in its host: the netfilter hooks they meet, for the record. */
async function hostView(h: Host): Promise<Record<string, unknown>> {
  const sysctl = async (k: string): Promise<string> => (await h.exec(['sysctl', '-n', k])).stdout.trim();
  const forward = (await h.exec(['iptables', '-w', '-S', 'FORWARD'])).stdout.split('\n').filter(Boolean);
  const tables = (await h.exec(['nft', 'list', 'tables'])).stdout.split('\n').filter(Boolean);
  return {
    bridgeNfCallIptables: await sysctl('net.bridge.bridge-nf-call-iptables'),
    forwardRules: forward.length - 1,
    nftTables: tables,
    conntrackMax: await sysctl('net.netfilter.nf_conntrack_max'),
  };
}

// ---------------------------------------------------------------------------------------------
// Report

const median = (xs: number[]): number => summarize(xs).p50;

/**
 * Each kind against the overlay: the ratio of the pooled medians, and the median over rounds of
 * the ratio within one round (both measured minutes apart at most: drift on a shared machine
 * cancels there, so that is the column to read).
 */
function rows(res: Record<Kind, KindResult>): Array<Array<string | number>> {
  const base = res.overlay;
  return KINDS.map((k) => {
    const r = res[k];
    const ping = paired(r.pingRoundP50Us, base.pingRoundP50Us, 1);
    const tcp = r.tcpGbps.length ? paired(r.tcpGbps, base.tcpGbps, 2) : null;
    return [
      k,
      fmt(r.pingUs.p50, 0), fmt(r.pingUs.p90, 0), fmt(ping.ratioOfMedians, 2), fmt(ping.medianPairedRatio, 2),
      tcp ? fmt(median(r.tcpGbps), 2) : '–', tcp ? fmt(tcp.medianPairedRatio, 2) : '–',
      r.lost,
    ];
  });
}

const HEADER = ['kind', 'ping p50 µs', 'ping p90 µs', 'p50 ÷ overlay', 'ping ÷ overlay, paired', 'TCP Gbit/s (median)', 'TCP ÷ overlay, paired', 'lost'];

async function main(): Promise<number> {
  const pre = preflight(parseArgs, USAGE, 'bench:datapath', MAIN_JS);
  if ('code' in pre) return pre.code;
  const opts = pre.opts;
  if (opts.profile) KINDS = [...BASE_KINDS, ...PROFILE_KINDS];
  if (opts.fastPath === 'auto') KINDS = [...KINDS, 'vxnet-bridged'];
  const env: Partial<Env> = {};
  const started = Date.now();
  return runWithCleanup(async () => {
    const machine = await machineInfo();
    const e = await setUp(env, opts);
    const res = await measure(e, opts);
    const view = await hostView(e.hosts[0]);
    const result = {
      ...resultHeader('datapath', started, opts, machine),
      source: await sourceRevision(REPO_ROOT),
      docker: await dockerVersions(e.hosts[0]),
      units: 'µs (ping), Gbit/s (TCP); percentiles interpolate between closest ranks',
      hostView: view,
      kinds: res,
      ...(opts.fastPath === 'auto' ? { autoSwitchMs: SWITCH_MS } : {}),
    };
    fs.mkdirSync(path.dirname(opts.out), { recursive: true });
    fs.writeFileSync(opts.out, `${JSON.stringify(result, null, 2)}\n`);
    const table = rows(res);
    const mtus = KINDS.map((k) => `${k} ${res[k].mtu}`).join(', ');
    const switches = opts.fastPath === 'auto' ? `auto: suspended in ${SWITCH_MS.suspend.join(' ')} ms, back in ${SWITCH_MS.resume.join(' ')} ms (rule inserted / deleted until the blocks were seen so)\n` : '';
    process.stdout.write(`\n${textTable(HEADER, table)}\n\n${markdownTable(HEADER, table)}\n\neth0 MTU: ${mtus}\n${switches}results: ${opts.out}\n`);
    return 0;
  }, () => cleanUp(env));
}

main().then((code) => process.exit(code), (err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
