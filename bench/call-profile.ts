// Where a plugin call's time goes, without the kernel: the driver's real HTTP app, network
// driver, IPAM, port publisher and peer watch over a real etcd (127.0.0.1, started here, no root
// needed), with a dataplane that only records calls. Each `docker run --rm` sequence of calls is
// sent over the Unix socket as dockerd sends it, one after the other, and for every call it
// reports the round trip, the driver's own time (fastify's, as logged) and the store calls it
// made (how many of each kind, and their time). Kernel work (veth, bridge) is not in these
// figures unless --kernel: then the real dataplane (netlink, iptables, the kernel thread that deletes veths)
// does the work inside a throwaway network namespace the bench makes and deletes (root needed).
//
//   npm run build && node dist/bench/call-profile.js [--runs N] [--out FILE] [--kernel]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startEtcd } from '../test/helpers/etcd';
import { recordingDataplane } from '../test/helpers/recording-dataplane';
import { pluginCall } from '../test/helpers/plugin-client';
import { EtcdStore } from '../src/store/etcd';
import { EmbeddedStore } from '../src/store/embedded';
import { timedStore, StoreOp } from '../src/store/timed';
import { Keys } from '../src/store/json';
import { Ipam } from '../src/ipam/ipam';
import { NetworkDriver } from '../src/network/network-driver';
import { PeerSync } from '../src/network/peers';
import { RecordCache } from '../src/network/record-cache';
import { PortPublisher, PortDataplane } from '../src/ports';
import { buildApp } from '../src/server/app';
import { listenOnSocket } from '../src/server/listen';
import { createLogger } from '../src/log';
import { summarize, rounded, textTable, markdownTable, fmt, Summary } from './lib/stats';
import { log, intArg, eachFlag } from './lib/runner';
import { spawnSync } from 'node:child_process';
import * as realDataplane from '../src/dataplane';
import { machineInfo, sourceRevision, resultHeader } from './lib/machine';

const USAGE = `Usage: node dist/bench/call-profile.js [options]     (build first: npm run build)
  --runs N      docker run sequences measured (default 200, after 20 not measured)
  --store etcd|embedded   the store (default etcd; embedded: the single-host store, vtep off, no peers)
  --out FILE    results file (default bench/results/call-profile-<store>[-kernel].json)
  --kernel      the real dataplane in a throwaway network namespace (root needed)
Without --kernel no root is needed: etcd runs on 127.0.0.1 from /usr/bin/etcd, the dataplane is a
recording fake.`;

interface Options {
  runs: number;
  store: 'etcd' | 'embedded';
  out: string | null;
  kernel: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { runs: 200, store: 'etcd', out: null, kernel: false };
  eachFlag(argv, USAGE, (flag, next) => {
    switch (flag) {
      case '--runs': o.runs = intArg(flag, next(), 1); break;
      case '--store': {
        const v = next();
        if (v !== 'etcd' && v !== 'embedded') throw new Error(`--store: etcd or embedded, not ${v}`);
        o.store = v;
        break;
      }
      case '--out': o.out = path.resolve(next() ?? ''); break;
      case '--kernel': o.kernel = true; break;
      default: throw new Error(`unknown argument ${flag} (see --help)`);
    }
  });
  return o;
}

const HOST = 'prof-h1';
const noPorts: PortDataplane = {
  ensurePortChains: async () => undefined,
  addPortRules: async () => undefined,
  removePortRules: async () => undefined,
  removePortRulesOf: async () => undefined,
  listPortRuleOwners: async () => new Map(),
  enableRouteLocalnet: async () => undefined,
  enableHairpin: async () => undefined,
  reservePort: async () => null,
  readEphemeralRange: () => '32768 60999',
};

const hex = (): string => [...Array(64)].map(() => Math.floor(Math.random() * 16).toString(16)).join('');

/** Set in the child that runs inside the bench's own network namespace. */
const IN_NETNS = 'VXT_CALLPROF_NETNS';

/** Runs this bench again inside a new network namespace, deleted afterwards whatever happens. */
function rerunInNetns(): number {
  const ns = `vxt-callprof-${process.pid}`;
  const sh = (args: string[]): number => spawnSync(args[0], args.slice(1), { stdio: 'inherit', env: { ...process.env, [IN_NETNS]: ns } }).status ?? 1;
  if (sh(['ip', 'netns', 'add', ns]) !== 0) return 1;
  try {
    sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    return sh(['ip', 'netns', 'exec', ns, process.execPath, ...process.execArgv, __filename, ...process.argv.slice(2)]);
  } finally {
    sh(['ip', 'netns', 'del', ns]);
  }
}

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  if (opts.kernel && !process.env[IN_NETNS]) return rerunInNetns();
  const started = Date.now();
  const machine = await machineInfo();
  const source = await sourceRevision(path.resolve(__dirname, '../..'));
  const out = opts.out ?? path.resolve(`bench/results/call-profile-${opts.store}${opts.kernel ? '-kernel' : ''}.json`);
  const etcd = opts.store === 'etcd' ? await startEtcd() : null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vxt-callprof-'));
  const sock = path.join(dir, 'vxnet.sock');
  // The store calls of the plugin call in progress (calls are sent one at a time).
  let bucket: Array<{ op: StoreOp; ms: number }> | null = null;
  const inner = etcd ? await EtcdStore.open({ endpoints: [etcd.endpoint], prefix: '/vxnet/v1/' }) : EmbeddedStore.open({ dataDir: path.join(dir, 'store') });
  const store = timedStore(inner, (op, s) => bucket?.push({ op, ms: s * 1000 }));
  const logFile = path.join(dir, 'driver.log');
  const logStream = fs.createWriteStream(logFile);
  const log0 = createLogger('info', logStream);
  const keys = new Keys('/vxnet/v1/');
  // With --kernel, runs alternate how DeleteEndpoint deletes the veth: `inline` awaits the
  // kernel on the main thread (as before the reaper thread), `reaper` hands it over.
  let vethDelete: 'inline' | 'reaper' = 'reaper';
  const dataplane = opts.kernel
    ? { ...realDataplane, releaseVeth: (n: string) => (vethDelete === 'inline' ? realDataplane.removeVeth(n) : realDataplane.releaseVeth(n)) }
    : recordingDataplane();
  if (opts.kernel) {
    await realDataplane.ensureFirewall({ dryRun: false });
    await realDataplane.ensureAntispoof({ dryRun: false });
  }
  // Over etcd the network gets a VXLAN device, which needs an underlay: one end of a veth pair in the
  // bench's namespace holds the VTEP address (no peer is ever reached).
  const underlay = opts.kernel ? 'vxt-ul0' : 'eth0';
  if (opts.kernel && etcd) {
    for (const args of [['link', 'add', underlay, 'type', 'veth', 'peer', 'name', 'vxt-ul1'], ['addr', 'add', '192.0.2.1/24', 'dev', underlay], ['link', 'set', underlay, 'up']]) {
      if (spawnSync('ip', args, { stdio: 'inherit' }).status !== 0) throw new Error(`ip ${args.join(' ')} failed`);
    }
  }
  const ipam = new Ipam({ store, keys, host: HOST, defaultPools: [{ base: '10.128.0.0/9', size: 24 }], hostRoutes: async () => [] });
  // As the daemon wires it: peers (and a VTEP) only with a shared store.
  const peers = etcd ? new PeerSync({ store, keys, dataplane, host: HOST, log: log0 }) : null;
  await peers?.start();
  const records = new RecordCache({ store, keys, host: HOST, log: log0 });
  await records.start();
  const driver = new NetworkDriver({
    store, keys, dataplane, ipam, host: HOST, defaultMtu: 1450, vniRange: { min: 256, max: 4095 },
    vtep: etcd ? { ip: '192.0.2.1', iface: underlay } : null, vxlanPort: 4789, peers, records, teardownDelayMs: 5000, log: log0,
  });
  const ports = new PortPublisher({ store, keys, host: HOST, dataplane: noPorts, places: driver, log: log0 });
  const app = buildApp({ driver, ipam, ports, log: log0, scope: 'local' });
  await listenOnSocket(app, sock);
  const results: Record<string, { rtt: number[]; driver: number[]; storeOps: number[]; storeMs: number[]; ops: Record<string, number[]> }> = {};
  // The key of every call made, in order ('' when not measured): the driver logs one line per call.
  const callKeys: string[] = [];
  try {
    const call = async (method: string, body: unknown, measure: boolean): Promise<Record<string, unknown>> => {
      const key = measure ? (opts.kernel ? `${method} [${vethDelete}]` : method) : '';
      callKeys.push(key);
      bucket = [];
      const t0 = process.hrtime.bigint();
      const r = await pluginCall(sock, method, body);
      const rtt = Number(process.hrtime.bigint() - t0) / 1e6;
      const ops = bucket;
      bucket = null;
      if (r.status !== 200 || r.body.Err || r.body.Error) throw new Error(`${method}: ${r.status} ${JSON.stringify(r.body)}`);
      if (measure) {
        const e = (results[key] ??= { rtt: [], driver: [], storeOps: [], storeMs: [], ops: {} });
        e.rtt.push(rtt);
        e.storeOps.push(ops.length);
        e.storeMs.push(ops.reduce((a, o) => a + o.ms, 0));
        const byOp: Record<string, number> = {};
        for (const o of ops) byOp[o.op] = (byOp[o.op] ?? 0) + 1;
        for (const [k, n] of Object.entries(byOp)) (e.ops[k] ??= []).push(n);
      }
      return r.body;
    };
    const pool = await call('IpamDriver.RequestPool', { AddressSpace: 'vxnet-local', Pool: '10.233.0.0/16', SubPool: '', Options: {}, V6: false }, false);
    const poolId = String(pool.PoolID);
    await call('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } }, false);
    const networkId = hex();
    await call('NetworkDriver.CreateNetwork', { NetworkID: networkId, Options: {}, IPv4Data: [{ AddressSpace: 'vxnet-local', Pool: '10.233.0.0/16', Gateway: '10.233.0.1/16' }], IPv6Data: [] }, false);
    // A resident endpoint keeps the network's devices up, as a container of it already on the host.
    const resident = { NetworkID: networkId, EndpointID: hex() };
    const ra = await call('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: null }, false);
    await call('NetworkDriver.CreateEndpoint', { ...resident, Interface: { Address: ra.Address, AddressIPv6: '', MacAddress: '' }, Options: {} }, false);
    await call('NetworkDriver.Join', { ...resident, SandboxKey: '/var/run/docker/netns/x', Options: {} }, false);
    const warm = 20;
    log(`call profile: ${warm} + ${opts.runs} docker run sequences over ${etcd ? `etcd ${etcd.endpoint}` : 'the embedded store'}`);
    for (let i = 0; i < warm + opts.runs; i++) {
      const m = i >= warm;
      vethDelete = i % 2 === 0 ? 'inline' : 'reaper';
      const ids = { NetworkID: networkId, EndpointID: hex() };
      const a = await call('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: null }, m);
      await call('NetworkDriver.CreateEndpoint', { ...ids, Interface: { Address: a.Address, AddressIPv6: '', MacAddress: '' }, Options: {} }, m);
      await call('NetworkDriver.Join', { ...ids, SandboxKey: `/var/run/docker/netns/${ids.EndpointID.slice(0, 12)}`, Options: {} }, m);
      await call('NetworkDriver.ProgramExternalConnectivity', { ...ids, Options: {} }, m);
      await call('NetworkDriver.EndpointOperInfo', ids, m);
      await call('NetworkDriver.EndpointOperInfo', ids, m);
      await call('NetworkDriver.RevokeExternalConnectivity', ids, m);
      await call('NetworkDriver.Leave', ids, m);
      await call('NetworkDriver.DeleteEndpoint', ids, m);
      await call('IpamDriver.ReleaseAddress', { PoolID: poolId, Address: String(a.Address).split('/')[0] }, m);
    }
  } finally {
    await app.close();
    records.close();
    await peers?.close();
    await store.close();
    await etcd?.stop();
    if (opts.kernel) {
      await realDataplane.closeReaper();
      realDataplane.closeRtnl();
    }
  }
  await new Promise<void>((r) => logStream.end(r));
  // The driver's own time per call, from its log lines: the i-th line is the i-th call made.
  const driverMs: Record<string, number[]> = {};
  const lines = fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('"plugin call"'));
  if (lines.length !== callKeys.length) log(`note: ${lines.length} plugin call log lines for ${callKeys.length} calls; driver times may be misattributed`);
  lines.forEach((line, i) => {
    const key = callKeys[i];
    if (key) (driverMs[key] ??= []).push((JSON.parse(line) as { ms: number }).ms);
  });
  fs.rmSync(dir, { recursive: true, force: true });
  const s = (v: number[]): Summary => rounded(summarize(v), 2);
  const calls = Object.fromEntries(
    Object.entries(results).map(([k, e]) => {
      const d = driverMs[k] ?? [];
      return [k, { rttMs: s(e.rtt), driverMs: s(d), storeCalls: s(e.storeOps).p50, storeMs: s(e.storeMs), storeCallsByOp: Object.fromEntries(Object.entries(e.ops).map(([op, n]) => [op, s(n).p50])) }];
    }),
  );
  // Weighted by how often a run makes the call (EndpointOperInfo: twice); per veth-delete mode with --kernel.
  const modes = opts.kernel ? ['inline', 'reaper'] : [''];
  const sums = Object.fromEntries(modes.map((mode) => {
    const mine = Object.entries(calls).filter(([k]) => !mode || k.endsWith(`[${mode}]`));
    const runs = opts.kernel ? opts.runs / 2 : opts.runs;
    return [mode || 'all', Math.round(mine.reduce((a, [, c]) => a + c.driverMs.p50 * (c.rttMs.n / runs), 0) * 100) / 100];
  }));
  const sumP50 = opts.kernel ? sums.reaper : sums.all;
  const result = { ...resultHeader('call-profile', started, opts, machine), source, store: opts.store, kernel: opts.kernel, calls, runDriverMsSumOfP50: sumP50, runDriverMsSumOfP50ByVethDelete: opts.kernel ? sums : undefined };
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  const header = ['call', 'n', 'round trip p50', 'driver p50', 'driver p90', 'store calls', 'store ms p50', 'store calls by kind'];
  const rows = Object.entries(calls).map(([k, c]) => [
    k.replace(/^\w+\./, ''), c.rttMs.n, fmt(c.rttMs.p50, 2), fmt(c.driverMs.p50, 2), fmt(c.driverMs.p90, 2), c.storeCalls, fmt(c.storeMs.p50, 2),
    Object.entries(c.storeCallsByOp).map(([op, n]) => `${op} ${n}`).join(', '),
  ]);
  for (const [mode, sum] of Object.entries(sums)) rows.push([`sum of driver p50 (one docker run)${mode === 'all' ? '' : ` [${mode}]`}`, '', '', fmt(sum, 2), '', '', '', '']);
  process.stdout.write(`\n${textTable(header, rows)}\n\n--- Markdown ---\n\n${markdownTable(header, rows)}\n\n`);
  log(`results: ${path.relative(process.cwd(), out)}`);
  return 0;
}

void main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
