// Names across hosts, measured from inside containers on two simulated hosts (same dockerd
// version, sharing one etcd), each dockerd with `--dns` pointing at a fake upstream (dnsmasq in
// an "outside" namespace on the underlay; nothing else is contacted):
//   1. lookup latency (a client in the container's network namespace asking 127.0.0.11, as an
//      application does): a vxnet name of a container on the other host, vs Docker's own answer
//      for a local container on a plain bridge network (no vxnet in the path);
//   2. an outside name (answered by the fake upstream) through vxnet vs from a container on a
//      plain bridge network (Docker's resolver forwarding it with no vxnet in the path);
//   3. time from `docker run -d --name x` on host 1 returning to `x` resolving on host 2 (a
//      client on host 2 asking every 2 ms; negative when it resolved before the CLI returned);
//   4. time from `docker stop -t 0 x` on host 1 returning to `x` no longer resolving on host 2
//      (the issue asks for gone everywhere within 1 s).
// Prints a text table and writes bench/results/names-<docker version>.json. Nothing is asserted.
//
//   npm run build && node dist/bench/names.js [--docker 20|26] [--queries N] [--runs M]
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Host, DockerVersion } from '../test/helpers/hosts';
import { upHost, downHost, underlayDown, startInHost, REPO_ROOT } from '../test/helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../test/helpers/image';
import { Driver, startDriver, MAIN_JS } from '../test/helpers/vxnet-in-host';
import { HostEtcd, startEtcdInHost } from '../test/helpers/etcd-in-host';
import { summarize, rounded, textTable, ratio, Summary } from './lib/stats';
import { log, epochMs, intArg, eachFlag, dockerArg, preflight, runWithCleanup } from './lib/runner';
import { dockerVersions, machineInfo, resultHeader } from './lib/machine';

interface Options {
  docker: DockerVersion;
  queries: number;
  runs: number;
}

const ETCD = { name: 'vxt-bn0', ip: '172.31.254.120' };
const OUT = { name: 'vxt-bnout', ip: '172.31.254.129' };
const H1 = { name: 'vxt-bn1', ip: '172.31.254.121' };
const H2 = { name: 'vxt-bn2', ip: '172.31.254.122' };
const VXNET = 'bench-names';
const BRIDGE = 'bench-names-br';
const OUTSIDE_NAME = 'outside.test';
const OUTSIDE_ADDR = '172.31.254.77';
const DNS_PACKET = path.join(REPO_ROOT, 'node_modules/dns-packet');

const USAGE = `Usage: node dist/bench/names.js [--docker 20|26] [--queries N] [--runs M]   (build first)

  --docker 20|26   dockerd of both simulated hosts (default 20)
  --queries N      lookups per latency figure (default 300), after 20 warm-ups
  --runs M         docker run → resolves-on-the-other-host rounds (default 20)`;

function parseArgs(argv: string[]): Options {
  const o: Options = { docker: '20', queries: 300, runs: 20 };
  eachFlag(argv, USAGE, (flag, next) => {
    if (flag === '--docker') o.docker = dockerArg(next());
    else if (flag === '--queries') o.queries = intArg(flag, next(), 1);
    else if (flag === '--runs') o.runs = intArg(flag, next(), 1);
    else throw new Error(`unknown argument ${flag} (see --help)`);
  });
  return o;
}

/**
 * Runs in a container's network namespace. `time NAME N`: N sequential A queries to
 * 127.0.0.11:53, prints each round trip in ms (after 20 unmeasured). `wait NAME`: asks every 2 ms
 * until an A answer comes, prints the epoch ms of that answer. `gone NAME`: the same until an
 * answer without an A record comes.
 */
const CLIENT = `
const dp = require(${JSON.stringify(DNS_PACKET)});
const sock = require('dgram').createSocket('udp4');
const [mode, name, count] = process.argv.slice(1);
let id = 1, waiting = null;
sock.on('message', (m) => { const r = dp.decode(m); if (waiting && r.id === waiting.id) { const w = waiting; waiting = null; w.resolve(r); } });
function ask(timeoutMs) {
  return new Promise((resolve) => {
    id = (id + 1) & 0xffff;
    const t = setTimeout(() => { waiting = null; resolve(null); }, timeoutMs);
    waiting = { id, resolve: (r) => { clearTimeout(t); resolve(r); } };
    sock.send(dp.encode({ id, type: 'query', flags: dp.RECURSION_DESIRED, questions: [{ name, type: 'A', class: 'IN' }] }), 53, '127.0.0.11');
  });
}
(async () => {
  if (mode === 'time') {
    const out = [];
    for (let i = -20; i < Number(count); i++) {
      const t0 = process.hrtime.bigint();
      const r = await ask(2000);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (!r || !r.answers.some((a) => a.type === 'A')) { console.error('no answer for ' + name); process.exit(1); }
      if (i >= 0) out.push(ms);
    }
    console.log(JSON.stringify(out));
  } else {
    const want = mode === 'wait';
    const deadline = Date.now() + 10000;
    while (Date.now() < deadline) {
      const r = await ask(500);
      if (r && r.answers.some((a) => a.type === 'A') === want) { console.log(String(performance.timeOrigin + performance.now())); process.exit(0); }
      await new Promise((res) => setTimeout(res, 2));
    }
    console.error((want ? 'never resolved: ' : 'never gone: ') + name); process.exit(1);
  }
  process.exit(0);
})();`;

async function pidOf(h: Host, container: string): Promise<string> {
  return h.dockerOk(['inspect', '-f', '{{.State.Pid}}', container]);
}

async function timeLookups(h: Host, container: string, name: string, n: number): Promise<number[]> {
  const out = await h.execOk(['nsenter', '-t', await pidOf(h, container), '-n', process.execPath, '-e', CLIENT, 'time', name, String(n)], { timeoutMs: 120_000 });
  return JSON.parse(out) as number[];
}

interface Results {
  lookup: { vxnetRemote: Summary; dockerLocal: Summary; ratioP50: number; ratioP99: number };
  outside: { throughVxnet: Summary; withoutVxnet: Summary; addedP50Ms: number };
  runToResolve: Summary;
  stopToGone: Summary;
}

async function runBench(opts: Options, hosts: Host[], drivers: Driver[], etcd: HostEtcd): Promise<Results> {
  const [h1, h2] = hosts;
  for (const h of hosts) {
    await ensureTestImage(h);
    drivers.push(await startDriver(h, { VXNET_STORE: 'etcd', VXNET_ETCD_ENDPOINTS: etcd.endpoint, VXNET_VTEP_INTERFACE: 'eth0' }));
    await h.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', '10.96.0.0/16', '--gateway', '10.96.0.1', VXNET]);
  }
  await h1.dockerOk(['network', 'create', '-d', 'bridge', '--subnet', '10.97.0.0/24', BRIDGE]);
  await h2.dockerOk(['run', '-d', '--name', 'far', '--network', VXNET, TEST_IMAGE, 'sleep', '3600']);
  await h2.dockerOk(['run', '-d', '--name', 'watcher', '--network', VXNET, TEST_IMAGE, 'sleep', '3600']);
  await h1.dockerOk(['run', '-d', '--name', 'asker', '--network', VXNET, TEST_IMAGE, 'sleep', '3600']);
  await h1.dockerOk(['run', '-d', '--name', 'near-br', '--network', BRIDGE, TEST_IMAGE, 'sleep', '3600']);
  await h1.dockerOk(['run', '-d', '--name', 'asker-br', '--network', BRIDGE, TEST_IMAGE, 'sleep', '3600']);

  log(`lookup latency, ${opts.queries} queries per figure, interleaved in 4 slices`);
  const vx: number[] = [], br: number[] = [], outVx: number[] = [], outBr: number[] = [];
  const slice = Math.ceil(opts.queries / 4);
  for (let s = 0; s < 4; s++) {
    vx.push(...(await timeLookups(h1, 'asker', 'far', slice)));
    br.push(...(await timeLookups(h1, 'asker-br', 'near-br', slice)));
    outVx.push(...(await timeLookups(h1, 'asker', OUTSIDE_NAME, slice)));
    outBr.push(...(await timeLookups(h1, 'asker-br', OUTSIDE_NAME, slice)));
  }

  log(`docker run / stop on ${h1.name} → resolves / gone on ${h2.name}, ${opts.runs} rounds`);
  const lag: number[] = [];
  const goneLag: number[] = [];
  const watcherPid = await pidOf(h2, 'watcher');
  const watch = (mode: 'wait' | 'gone', name: string): Promise<string> =>
    h2.execOk(['nsenter', '-t', watcherPid, '-n', process.execPath, '-e', CLIENT, mode, name], { timeoutMs: 30_000 });
  for (let i = 0; i < opts.runs; i++) {
    const name = `x${i}`;
    const waiter = watch('wait', name);
    await new Promise((r) => setTimeout(r, 300)); // the waiter is asking before the run starts
    await h1.dockerOk(['run', '-d', '--name', name, '--network', VXNET, TEST_IMAGE, 'sleep', '3600']);
    const returned = epochMs();
    lag.push(Number(await waiter) - returned);
    const goneWaiter = watch('gone', name);
    await new Promise((r) => setTimeout(r, 300)); // still resolving while the stop starts
    await h1.dockerOk(['stop', '-t', '0', name]);
    const stopped = epochMs();
    goneLag.push(Number(await goneWaiter) - stopped);
    await h1.dockerOk(['rm', '-f', name]);
  }
  const vxS = rounded(summarize(vx), 3);
  const brS = rounded(summarize(br), 3);
  const outVxS = rounded(summarize(outVx), 3);
  const outBrS = rounded(summarize(outBr), 3);
  return {
    lookup: { vxnetRemote: vxS, dockerLocal: brS, ratioP50: ratio(vxS.p50, brS.p50), ratioP99: ratio(vxS.p99, brS.p99) },
    outside: { throughVxnet: outVxS, withoutVxnet: outBrS, addedP50Ms: Math.round((outVxS.p50 - outBrS.p50) * 1000) / 1000 },
    runToResolve: rounded(summarize(lag), 1),
    stopToGone: rounded(summarize(goneLag), 1),
  };
}

function report(r: Results): string {
  return [
    textTable(['lookup from a container, ms', 'p50', 'p99', 'max'], [
      ['vxnet: name on the other host', r.lookup.vxnetRemote.p50, r.lookup.vxnetRemote.p99, r.lookup.vxnetRemote.max],
      ['Docker: local name, bridge network', r.lookup.dockerLocal.p50, r.lookup.dockerLocal.p99, r.lookup.dockerLocal.max],
      ['ratio (goal ≤ 1.2)', r.lookup.ratioP50, r.lookup.ratioP99, ''],
      ['outside name through vxnet', r.outside.throughVxnet.p50, r.outside.throughVxnet.p99, r.outside.throughVxnet.max],
      ['outside name, no vxnet (bridge)', r.outside.withoutVxnet.p50, r.outside.withoutVxnet.p99, r.outside.withoutVxnet.max],
      ['added p50 (goal ≤ 0.5 ms)', r.outside.addedP50Ms, '', ''],
      ['docker run → resolves elsewhere', r.runToResolve.p50, r.runToResolve.p99, r.runToResolve.max],
      ['docker stop → gone elsewhere (goal ≤ 1000)', r.stopToGone.p50, r.stopToGone.p99, r.stopToGone.max],
    ]),
  ].join('\n');
}

async function main(): Promise<number> {
  const pre = preflight(parseArgs, USAGE, 'names bench', MAIN_JS);
  if ('code' in pre) return pre.code;
  const opts = pre.opts;
  const hosts: Host[] = [];
  const drivers: Driver[] = [];
  let etcd: HostEtcd | null = null;
  const underlayExisted = fs.existsSync('/run/netns/vxt-ul');
  return runWithCleanup(
    async () => {
      const started = Date.now();
      const etcdHost = await upHost(ETCD.name, ETCD.ip, { docker: null });
      etcd = await startEtcdInHost(etcdHost);
      const out = await upHost(OUT.name, OUT.ip, { docker: null });
      startInHost(out, 'dnsmasq', ['-k', '--no-resolv', '--no-hosts', `--listen-address=${OUT.ip}`, '--bind-interfaces', `--address=/${OUTSIDE_NAME}/${OUTSIDE_ADDR}`,
        `--pid-file=${path.join(out.stateDir, 'dnsmasq.pid')}`, '--user=root']);
      process.env.VXT_DOCKERD_EXTRA = `--dns ${OUT.ip}`;
      try {
        for (const h of [H1, H2]) hosts.push(await upHost(h.name, h.ip, { docker: opts.docker }));
      } finally {
        delete process.env.VXT_DOCKERD_EXTRA;
      }
      const results = await runBench(opts, hosts, drivers, etcd);
      const docker = await dockerVersions(hosts[0]);
      const result = { ...resultHeader('names', started, opts, await machineInfo()), docker, ...results };
      const file = path.join(REPO_ROOT, 'bench', 'results', `names-${docker.server.replace(/[^A-Za-z0-9.+_-]/g, '_')}.json`);
      fs.writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
      process.stdout.write(`\n${report(results)}\n`);
      log(`results: ${path.relative(process.cwd(), file)}`);
      return 0;
    },
    async () => {
      for (const d of drivers) await d.stop().catch(() => undefined);
      await (etcd as HostEtcd | null)?.stop().catch(() => undefined);
      for (const n of [H1.name, H2.name, OUT.name, ETCD.name]) await downHost(n).catch((e: unknown) => log(`downHost ${n}: ${(e as Error).message}`));
      if (!underlayExisted) await underlayDown().catch(() => undefined);
    },
  );
}

void main().then((code) => process.exit(code));
