// Network policy's cost as Docker users see it, on real dockerds (three simulated hosts of one
// version sharing one etcd; the names service on, so labels and names in rules work):
//
//   1. `docker run -d` wall time (to running) on host 1, interleaved in every round:
//        policy, label   isolated network (enable_icc=false) where `holder` has 1,000 rules in
//                        force, the container given `--label vxnet.allow=holder:8000` (CLI)
//        open, CLI       the same kind of vxnet network without policy (CLI)
//        policy, option  as "policy, label" but the rule as an endpoint driver option, applied
//                        inside Join (Engine API create + start: the 20.10 CLI has no
//                        `--network name=N,driver-opt=`)
//        open, API       the open network through the same API calls
//        Docker bridge   reference: Docker's own bridge driver, enable_icc=false, no vxnet
//      ratios policy ÷ open, p50 and p90.
//   2. A rule following a moved peer: `db` on host 1 allows `web:8000` (by name); `web` is
//      removed from host 2 (3) and started on host 3 (2) with a new address (--ip), move after
//      move. Host 1's kernel set is watched through nf_tables' netlink notifications
//      (lib/nft-set-watch.ts) and its etcd through a watch (lib/etcd-key-events.ts): time from
//      `docker run` of the new web returning (and from its names record reaching host 1) until
//      allow_in lets its address in, and from `docker rm -f` of the old one returning (and from
//      its names record leaving) until the old address is gone (negative: before the command
//      returned). The record-based times are the policy engine's own part.
// Prints a table and writes bench/results/policy-docker-<docker version>.json. Nothing is asserted.
//
//   npm run build && node dist/bench/policy-docker.js [--docker 20|26] [--runs N] [--moves M] [--rules R]
import * as fs from 'node:fs';
import * as path from 'node:path';
import Docker from 'dockerode';
import type { Host, DockerVersion } from '../test/helpers/hosts';
import { upHost, downHost, underlayDown, stopInHost, REPO_ROOT } from '../test/helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../test/helpers/image';
import { Driver, startDriver, MAIN_JS } from '../test/helpers/vxnet-in-host';
import { HostEtcd, startEtcdInHost } from '../test/helpers/etcd-in-host';
import { containerIp } from '../test/helpers/docker-inspect';
import { etcdDriverEnv } from './lib/etcd-driver';
import { summarize, rounded, textTable, ratio, fmt, Summary } from './lib/stats';
import { log, epochMs, nowMs, intArg, eachFlag, dockerArg, preflight, runWithCleanup, sleep } from './lib/runner';
import { dockerVersions, machineInfo, resultHeader } from './lib/machine';
import { SetSourceWatch } from './lib/nft-set-watch';
import { startEventChild } from './lib/event-child';

interface Options {
  docker: DockerVersion;
  runs: number;
  moves: number;
  rules: number;
}

const ETCD = { name: 'vxt-bq0', ip: '172.31.254.244' };
const HOSTS = [
  { name: 'vxt-bq1', ip: '172.31.254.245' },
  { name: 'vxt-bq2', ip: '172.31.254.246' },
  { name: 'vxt-bq3', ip: '172.31.254.247' },
];
const POL = { name: 'bq-pol', subnet: '10.124.0.0/22', gateway: '10.124.0.1' };
const OPEN = { name: 'bq-open', subnet: '10.124.4.0/22', gateway: '10.124.4.1' };
const FOL = { name: 'bq-fol', subnet: '10.124.8.0/24', gateway: '10.124.8.1' };
const BRIDGE = { name: 'bq-bridge', subnet: '10.124.12.0/24' };
const ICC_OFF = ['-o', 'com.docker.network.bridge.enable_icc=false'];
const RULE = 'holder:8000';
const MOVE_WAIT_MS = 10_000;
const PREFIX = '/vxnet-bench-policy-docker/';

const KINDS = ['policy, label', 'open, CLI', 'policy, option', 'open, API', 'Docker bridge'] as const;
type Kind = (typeof KINDS)[number];

const USAGE = `Usage: node dist/bench/policy-docker.js [--docker 20|26] [--runs N] [--moves M] [--rules R]   (build first)

  --docker 20|26   dockerd of the three simulated hosts (default 20)
  --runs N         docker runs per kind, interleaved (default 30)
  --moves M        moves of the peer a rule names (default 30)
  --rules R        rules of the holder on the policy network (default 1000)`;

function parseArgs(argv: string[]): Options {
  const o: Options = { docker: '20', runs: 30, moves: 30, rules: 1000 };
  eachFlag(argv, USAGE, (flag, next) => {
    if (flag === '--docker') o.docker = dockerArg(next());
    else if (flag === '--runs') o.runs = intArg(flag, next(), 1);
    else if (flag === '--moves') o.moves = intArg(flag, next(), 1);
    else if (flag === '--rules') o.rules = intArg(flag, next(), 1);
    else throw new Error(`unknown argument ${flag} (see --help)`);
  });
  return o;
}

function vxnetNet(net: { name: string; subnet: string; gateway: string }, ...extra: string[]): string[] {
  return ['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', net.subnet, '--gateway', net.gateway, ...extra, net.name];
}

/** R rules in force: 10.200.0.0/16 sources, one port each (as bench/policy.ts). */
function manyRules(n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(`10.200.${i >> 8}.${i & 255}:${1000 + (i % 60000)}`);
  return out.join(' ');
}

/** How many allow_in elements have `dst` as destination on a host. */
async function allowInFor(h: Host, dst: string): Promise<number> {
  const out = await h.execOk(['nft', 'list', 'set', 'inet', 'vxnet-policy', 'allow_in']);
  return out.split(/[{,]/).filter((e) => e.trim().startsWith(`${dst} . `)).length;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** `docker run -d` through the Engine API (what the CLI does: create, then start). */
async function apiRun(api: Docker, name: string, net: string, driverOpts?: Record<string, string>): Promise<void> {
  const c = await api.createContainer({
    name,
    Image: TEST_IMAGE,
    Cmd: ['sleep', '3600'],
    HostConfig: { NetworkMode: net },
    NetworkingConfig: { EndpointsConfig: { [net]: driverOpts ? { DriverOpts: driverOpts } : {} } },
  });
  await c.start();
}

interface RunResults {
  runMs: Record<Kind, Summary>;
  rmMs: Record<Kind, Summary>;
  samples: Record<Kind, number[]>;
  ratios: { label: { p50: number; p90: number }; option: { p50: number; p90: number } };
  holderAllowInElements: number;
}

async function benchRuns(opts: Options, h: Host): Promise<RunResults> {
  const api = new Docker({ socketPath: h.dockerSocket as string });
  await h.dockerOk(['run', '-d', '--name', 'holder', '--network', POL.name, '--label', `vxnet.allow=${manyRules(opts.rules)}`, TEST_IMAGE, 'sleep', '3600']);
  const holderIp = await containerIp(h, POL.name, 'holder');
  await waitFor(`holder's ${opts.rules} rules in host 1's kernel`, async () => (await allowInFor(h, holderIp)) >= opts.rules, 30_000);
  const holderAllowInElements = await allowInFor(h, holderIp);
  log(`holder ${holderIp} has ${opts.rules} rules (${holderAllowInElements} allow_in elements)`);

  // One warm-up of each kind (image layers, first network use), not counted.
  const doRun: Record<Kind, (name: string) => Promise<unknown>> = {
    'policy, label': (n) => h.dockerOk(['run', '-d', '--name', n, '--network', POL.name, '--label', `vxnet.allow=${RULE}`, TEST_IMAGE, 'sleep', '3600']),
    'open, CLI': (n) => h.dockerOk(['run', '-d', '--name', n, '--network', OPEN.name, TEST_IMAGE, 'sleep', '3600']),
    'policy, option': (n) => apiRun(api, n, POL.name, { 'vxnet.allow': RULE }),
    'open, API': (n) => apiRun(api, n, OPEN.name),
    'Docker bridge': (n) => h.dockerOk(['run', '-d', '--name', n, '--network', BRIDGE.name, TEST_IMAGE, 'sleep', '3600']),
  };
  for (const k of KINDS) {
    await doRun[k]('warm');
    await h.dockerOk(['rm', '-f', 'warm']);
  }
  // The rule really is in force, both ways (checked once, outside the timed runs).
  for (const k of ['policy, label', 'policy, option'] as const) {
    await doRun[k]('check');
    const ip = await containerIp(h, POL.name, 'check');
    await waitFor(`${k}: rule of ${ip} in the kernel`, async () => (await allowInFor(h, ip)) === 1);
    await h.dockerOk(['rm', '-f', 'check']);
  }

  const samples = Object.fromEntries(KINDS.map((k) => [k, [] as number[]])) as Record<Kind, number[]>;
  const rms = Object.fromEntries(KINDS.map((k) => [k, [] as number[]])) as Record<Kind, number[]>;
  log(`docker run, ${opts.runs} per kind, ${KINDS.length} kinds interleaved (order rotates each round)`);
  for (let r = 0; r < opts.runs; r++) {
    for (let j = 0; j < KINDS.length; j++) {
      const k = KINDS[(r + j) % KINDS.length];
      const name = `r${r}-${j}`;
      const t0 = nowMs();
      await doRun[k](name);
      samples[k].push(nowMs() - t0);
      const t1 = nowMs();
      await h.dockerOk(['rm', '-f', name]);
      rms[k].push(nowMs() - t1);
      await sleep(100); // the driver's work after the rm (store watch, sets) is not billed to the next run
    }
    if ((r + 1) % 10 === 0) log(`  round ${r + 1}: ${KINDS.map((k) => `${k} ${fmt(samples[k][r], 0)}`).join(', ')} ms`);
  }
  const runMs = Object.fromEntries(KINDS.map((k) => [k, rounded(summarize(samples[k]), 1)])) as Record<Kind, Summary>;
  const rmMs = Object.fromEntries(KINDS.map((k) => [k, rounded(summarize(rms[k]), 1)])) as Record<Kind, Summary>;
  const rr = (a: Kind, b: Kind) => ({ p50: ratio(runMs[a].p50, runMs[b].p50, 3), p90: ratio(runMs[a].p90, runMs[b].p90, 3) });
  await h.dockerOk(['rm', '-f', 'holder']);
  return {
    runMs,
    rmMs,
    samples: Object.fromEntries(KINDS.map((k) => [k, samples[k].map((x) => Math.round(x * 10) / 10)])) as Record<Kind, number[]>,
    ratios: { label: rr('policy, label', 'open, CLI'), option: rr('policy, option', 'open, API') },
    holderAllowInElements,
  };
}

interface Move {
  from: string;
  to: string;
  oldIp: string;
  newIp: string;
  /** new address allowed, ms after `docker run` returned (and after it was issued) */
  inAfterRunMs: number | null;
  inAfterRunIssuedMs: number | null;
  /** old address gone, ms after `docker rm -f` returned */
  outAfterRmMs: number | null;
  /**
   * The same, from when host 1 could first see the records (etcd events there): the new endpoint
   * record (CreateEndpoint on the new host), the new names record (its publisher, after the
   * start: rules resolve names through these), the old names record's removal. The last two
   * are the policy engine's own part: store watch → resolve → set diff → kernel.
   */
  inAfterEndpointRecordMs: number | null;
  inAfterNamesRecordMs: number | null;
  outAfterNamesRemovedMs: number | null;
  runMs: number;
  rmMs: number;
}

interface FollowResults {
  moves: Move[];
  newAllowedAfterRun: Summary;
  newAllowedAfterRunIssued: Summary;
  oldGoneAfterRm: Summary;
  newAllowedAfterEndpointRecord: Summary;
  newAllowedAfterNamesRecord: Summary;
  oldGoneAfterNamesRemoved: Summary;
  timeouts: number;
  /** notifications the kernel could not deliver (ENOBUFS): none, or the figures are suspect */
  lostNotifications: string[];
}

async function benchFollow(opts: Options, hosts: Host[], etcdEndpoint: string): Promise<FollowResults> {
  const [a, ...peers] = hosts;
  const endpointId = (h: Host): Promise<string> => h.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${FOL.name}").EndpointID}}`, 'web']);
  const records: Array<{ t: number; op: 'put' | 'delete'; key: string }> = [];
  const seen = (op: 'put' | 'delete', kind: 'endpoints' | 'names', id: string): number | null =>
    records.find((r) => r.op === op && r.key.startsWith(`${PREFIX}${kind}/`) && r.key.endsWith(`/${id}`))?.t ?? null;
  const since = (t: number | null, from: number | null): number | null => (t === null || from === null ? null : Math.round((t - from) * 10) / 10);
  await a.dockerOk(['run', '-d', '--name', 'db', '--network', FOL.name, '--label', 'vxnet.allow=web:8000', TEST_IMAGE, 'sleep', '3600']);
  const dbIp = await containerIp(a, FOL.name, 'db');
  const addr = (i: number): string => `10.124.8.${20 + 2 * (i % 100)}`; // never adjacent: no merged ranges
  let at = 0;
  await peers[at].dockerOk(['run', '-d', '--name', 'web', '--network', FOL.name, `--ip=${addr(0)}`, TEST_IMAGE, 'sleep', '3600']);
  await waitFor(`db's rule lets web ${addr(0)} in`, async () => (await allowInFor(a, dbIp)) === 1 && (await a.execOk(['nft', 'list', 'set', 'inet', 'vxnet-policy', 'allow_in'])).includes(`${dbIp} . ${addr(0)} `));
  let oldId = await endpointId(peers[at]);
  const keyEvents = await startEventChild<{ t: number; op: 'put' | 'delete'; key: string }>(a, 'etcd-key-events.js', [etcdEndpoint, PREFIX], (ev) => records.push(ev));
  const watch = new SetSourceWatch(a, 'vxnet-policy', 'allow_in', dbIp);
  await watch.start();
  const moves: Move[] = [];
  let lostNotifications: string[] = [];
  try {
    log(`rule following a moved peer: ${opts.moves} moves between ${peers.map((p) => p.name).join(' and ')}, watched on ${a.name} (nf_tables notifications)`);
    for (let i = 1; i <= opts.moves; i++) {
      const from = peers[at];
      const to = peers[1 - at];
      const oldIp = addr(i - 1);
      const newIp = addr(i);
      const rm0 = epochMs();
      await from.dockerOk(['rm', '-f', 'web']);
      const rm1 = epochMs();
      await to.dockerOk(['run', '-d', '--name', 'web', '--network', FOL.name, `--ip=${newIp}`, TEST_IMAGE, 'sleep', '3600']);
      const run1 = epochMs();
      const tOut = await watch.when(oldIp, false, rm0, MOVE_WAIT_MS);
      const tIn = await watch.when(newIp, true, rm1, MOVE_WAIT_MS);
      const newId = await endpointId(to);
      const m: Move = {
        from: from.name,
        to: to.name,
        oldIp,
        newIp,
        inAfterRunMs: tIn === null ? null : Math.round((tIn - run1) * 10) / 10,
        inAfterRunIssuedMs: tIn === null ? null : Math.round((tIn - rm1) * 10) / 10,
        outAfterRmMs: tOut === null ? null : Math.round((tOut - rm1) * 10) / 10,
        inAfterEndpointRecordMs: since(tIn, seen('put', 'endpoints', newId)),
        inAfterNamesRecordMs: since(tIn, seen('put', 'names', newId)),
        outAfterNamesRemovedMs: since(tOut, seen('delete', 'names', oldId)),
        runMs: Math.round((run1 - rm1) * 10) / 10,
        rmMs: Math.round((rm1 - rm0) * 10) / 10,
      };
      moves.push(m);
      if (tIn === null || tOut === null) log(`  move ${i}: ${tIn === null ? 'new address never allowed' : ''} ${tOut === null ? 'old address never removed' : ''} within ${MOVE_WAIT_MS} ms (kernel: ${watch.current().join(', ')})`);
      if (i % 10 === 0) log(`  move ${i}: new allowed ${fmt(m.inAfterRunMs ?? NaN, 0)} ms after run returned, old gone ${fmt(m.outAfterRmMs ?? NaN, 0)} ms after rm returned`);
      at = 1 - at;
      oldId = newId;
      await sleep(200);
    }
  } finally {
    lostNotifications = watch.lost();
    await watch.stop();
    await stopInHost(keyEvents, 2000);
  }
  // The kernel agrees with the monitor at the end (a check of the watch, not timed).
  const last = addr(opts.moves);
  const listing = await a.execOk(['nft', 'list', 'set', 'inet', 'vxnet-policy', 'allow_in']);
  if (!listing.includes(`${dbIp} . ${last} `) || (await allowInFor(a, dbIp)) !== 1) throw new Error(`host 1's allow_in does not hold exactly ${dbIp} . ${last}:\n${listing}`);
  await peers[at].dockerOk(['rm', '-f', 'web']);
  await a.dockerOk(['rm', '-f', 'db']);
  const ok = (f: (m: Move) => number | null): number[] => moves.map(f).filter((x): x is number => x !== null);
  return {
    moves,
    newAllowedAfterRun: rounded(summarize(ok((m) => m.inAfterRunMs)), 1),
    newAllowedAfterRunIssued: rounded(summarize(ok((m) => m.inAfterRunIssuedMs)), 1),
    oldGoneAfterRm: rounded(summarize(ok((m) => m.outAfterRmMs)), 1),
    newAllowedAfterEndpointRecord: rounded(summarize(ok((m) => m.inAfterEndpointRecordMs)), 1),
    newAllowedAfterNamesRecord: rounded(summarize(ok((m) => m.inAfterNamesRecordMs)), 1),
    oldGoneAfterNamesRemoved: rounded(summarize(ok((m) => m.outAfterNamesRemovedMs)), 1),
    timeouts: moves.filter((m) => m.inAfterRunMs === null || m.outAfterRmMs === null).length,
    lostNotifications,
  };
}

function report(r: RunResults, f: FollowResults): string {
  return [
    textTable(['docker run -d (ms)', 'p50', 'p90', 'max', 'rm -f p50'], KINDS.map((k) => [k, fmt(r.runMs[k].p50, 0), fmt(r.runMs[k].p90, 0), fmt(r.runMs[k].max, 0), fmt(r.rmMs[k].p50, 0)])),
    '',
    textTable(['ratio policy ÷ open (goal ≤ 1.1)', 'p50', 'p90'], [
      ['rule as a label (CLI)', r.ratios.label.p50, r.ratios.label.p90],
      ['rule as a driver option (API)', r.ratios.option.p50, r.ratios.option.p90],
    ]),
    '',
    textTable(['rule follows a moved peer (ms)', 'p50', 'p90', 'p99', 'max'], [
      ['new address allowed, after docker run returned', f.newAllowedAfterRun.p50, f.newAllowedAfterRun.p90, f.newAllowedAfterRun.p99, f.newAllowedAfterRun.max],
      ['new address allowed, after docker run issued', f.newAllowedAfterRunIssued.p50, f.newAllowedAfterRunIssued.p90, f.newAllowedAfterRunIssued.p99, f.newAllowedAfterRunIssued.max],
      ['new address allowed, after its endpoint record', f.newAllowedAfterEndpointRecord.p50, f.newAllowedAfterEndpointRecord.p90, f.newAllowedAfterEndpointRecord.p99, f.newAllowedAfterEndpointRecord.max],
      ['new address allowed, after its names record', f.newAllowedAfterNamesRecord.p50, f.newAllowedAfterNamesRecord.p90, f.newAllowedAfterNamesRecord.p99, f.newAllowedAfterNamesRecord.max],
      ['old address gone, after docker rm -f returned', f.oldGoneAfterRm.p50, f.oldGoneAfterRm.p90, f.oldGoneAfterRm.p99, f.oldGoneAfterRm.max],
      ['old address gone, after its names record went', f.oldGoneAfterNamesRemoved.p50, f.oldGoneAfterNamesRemoved.p90, f.oldGoneAfterNamesRemoved.p99, f.oldGoneAfterNamesRemoved.max],
    ]),
    `moves: ${f.moves.length}, timeouts (> ${MOVE_WAIT_MS} ms): ${f.timeouts}, lost notifications: ${f.lostNotifications.length}`,
  ].join('\n');
}

async function main(): Promise<number> {
  const pre = preflight(parseArgs, USAGE, 'policy-docker bench', MAIN_JS);
  if ('code' in pre) return pre.code;
  const opts = pre.opts;
  const hosts: Host[] = [];
  const drivers: Driver[] = [];
  let etcd: HostEtcd | null = null;
  const underlayExisted = fs.existsSync('/run/netns/vxt-ul');
  return runWithCleanup(
    async () => {
      const started = Date.now();
      const machine = await machineInfo(); // load at the start (the header adds the load at the end)
      const etcdHost = await upHost(ETCD.name, ETCD.ip, { docker: null });
      etcd = await startEtcdInHost(etcdHost);
      for (const h of HOSTS) {
        const host = await upHost(h.name, h.ip, { docker: opts.docker });
        await ensureTestImage(host);
        hosts.push(host);
        drivers.push(await startDriver(host, etcdDriverEnv(etcd.endpoint, PREFIX)));
        await host.dockerOk(vxnetNet(FOL));
      }
      const h1 = hosts[0];
      await h1.dockerOk(vxnetNet(POL, ...ICC_OFF));
      await h1.dockerOk(vxnetNet(OPEN));
      await h1.dockerOk(['network', 'create', '-d', 'bridge', '--subnet', BRIDGE.subnet, ...ICC_OFF, BRIDGE.name]);
      const runs = await benchRuns(opts, h1);
      const follow = await benchFollow(opts, hosts, (etcd as HostEtcd).endpoint);
      const docker = await dockerVersions(h1);
      const result = { ...resultHeader('policy-docker', started, opts, machine), docker, dockerRun: runs, follow };
      const file = path.join(REPO_ROOT, 'bench', 'results', `policy-docker-${docker.server.replace(/[^A-Za-z0-9.+_-]/g, '_')}.json`);
      fs.writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
      process.stdout.write(`\n${report(runs, follow)}\n`);
      log(`results: ${path.relative(process.cwd(), file)}`);
      return 0;
    },
    async () => {
      for (const d of drivers) await d.stop().catch(() => undefined);
      await (etcd as HostEtcd | null)?.stop().catch(() => undefined);
      for (const n of [...HOSTS.map((h) => h.name), ETCD.name]) await downHost(n).catch((e: unknown) => log(`downHost ${n}: ${(e as Error).message}`));
      if (!underlayExisted) await underlayDown().catch(() => undefined);
    },
  );
}

void main().then((code) => process.exit(code));
