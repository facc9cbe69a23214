// Network policy's cost on the datapath, across two simulated hosts sharing one etcd (namespace
// "containers" wired by plugin calls, as in multi-host.ts; FORWARD at DROP, bridged frames through
// netfilter, as dockerd leaves a host): a client on host1, and on host2 two servers side by side in
// one run: `ruled` with 1,000 ingress rules in force (vxnet.allow: the client's address plus 999
// other sources, each on its own port) and `open` without policy. Interleaved rounds of pings
// (RTT) and one single-stream TCP transfer to each; ratios ruled ÷ open. Nothing is asserted.
//
//   npm run build && node dist/bench/policy.js [--rounds N] [--pings N] [--seconds S] [--rules N]
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Host, upHost, downHost, underlayDown, run, REPO_ROOT } from '../test/helpers/hosts';
import { Driver, startDriver, socketFromOutside, MAIN_JS } from '../test/helpers/vxnet-in-host';
import { HostEtcd, startEtcdInHost } from '../test/helpers/etcd-in-host';
import { createFakeNetwork, startFakeContainer, FakeContainer } from '../test/helpers/fake-container';
import { etcdDriverEnv } from './lib/etcd-driver';
import { summarize, rounded, textTable, ratio, fmt } from './lib/stats';
import { log, intArg, eachFlag, preflight, runWithCleanup, epochMs } from './lib/runner';
import { machineInfo, resultHeader } from './lib/machine';
import { pickTcpTool, startTcpServer, tcpStream } from './lib/tcp-stream';

interface Options {
  rounds: number;
  pings: number;
  seconds: number;
  rules: number;
  out: string;
}

const ETCD = { name: 'vxt-bp0', ip: '172.31.254.240' };
const HOSTS = [
  { name: 'vxt-bp1', ip: '172.31.254.241' },
  { name: 'vxt-bp2', ip: '172.31.254.242' },
];
const SUBNET = '10.122.0.0/24';
const CONTAINERS = ['vxt-bpc', 'vxt-bpr', 'vxt-bpo'];
const TCP_PORT = 5201;
const USAGE = `Usage: node dist/bench/policy.js [--rounds N] [--pings N] [--seconds S] [--rules N]   (build first)

  --rounds N   interleaved rounds (default 4)
  --pings N    pings per side and round, 10 ms apart (default 200)
  --seconds S  TCP stream per side and round (default 3)
  --rules N    ingress rules of the ruled server (default 1000)`;

function parseArgs(argv: string[]): Options {
  const o: Options = { rounds: 4, pings: 200, seconds: 3, rules: 1000, out: path.join(REPO_ROOT, 'bench/results/policy.json') };
  eachFlag(argv, USAGE, (flag, next) => {
    if (flag === '--rounds') o.rounds = intArg(flag, next(), 1);
    else if (flag === '--pings') o.pings = intArg(flag, next(), 10);
    else if (flag === '--seconds') o.seconds = intArg(flag, next(), 1);
    else if (flag === '--rules') o.rules = intArg(flag, next(), 1);
    else throw new Error(`unknown argument ${flag} (see --help)`);
  });
  return o;
}

/** The client's address plus rules-1 other sources (10.200.0.0/16, one port each): all in force. */
function rulesFor(clientIp: string, n: number): string {
  const out = [clientIp];
  for (let i = 0; i < n - 1; i++) out.push(`10.200.${i >> 8}.${i & 255}:${1000 + (i % 60000)}`);
  return out.join(' ');
}

async function pingRtts(from: string, to: string, count: number): Promise<number[]> {
  const r = await run('ip', ['netns', 'exec', from, 'busybox', 'ping', '-c', String(count), '-i', '0.01', '-W', '2', to], { timeoutMs: count * 100 + 10_000 });
  return [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]) * 1000);
}

const children: ChildProcess[] = [];

async function main(): Promise<number> {
  const pre = preflight(parseArgs, USAGE, 'bench/policy', MAIN_JS);
  if ('code' in pre) return pre.code;
  const opts = pre.opts;
  const underlayExisted = fs.existsSync('/run/netns/vxt-ul');
  let etcdHost: Host | null = null;
  let etcd: HostEtcd | null = null;
  const hosts: Host[] = [];
  const drivers: Driver[] = [];
  return runWithCleanup(
    async () => {
      const started = epochMs();
      const tool = await pickTcpTool();
      etcdHost = await upHost(ETCD.name, ETCD.ip, { docker: null });
      etcd = await startEtcdInHost(etcdHost);
      for (const h of HOSTS) {
        const host = await upHost(h.name, h.ip, { docker: null });
        await host.execOk(['sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=1']);
        await host.execOk(['iptables', '-w', '-P', 'FORWARD', 'DROP']);
        hosts.push(host);
        drivers.push(await startDriver(host, etcdDriverEnv(etcd.endpoint, '/vxnet-bench-policy/')));
      }
      const socks = hosts.map(socketFromOutside);
      const nets = [];
      for (const s of socks) nets.push(await createFakeNetwork(s, SUBNET));
      for (const c of CONTAINERS) await run('ip', ['netns', 'del', c]);
      const client = await startFakeContainer(hosts[0].name, socks[0], nets[0], CONTAINERS[0]);
      const clientIp = client.address.split('/')[0];
      const rules = rulesFor(clientIp, opts.rules);
      const t0 = Date.now();
      const ruled = await startFakeContainer(hosts[1].name, socks[1], nets[1], CONTAINERS[1], '', { 'vxnet.allow': rules });
      const startRuledMs = Date.now() - t0;
      const open = await startFakeContainer(hosts[1].name, socks[1], nets[1], CONTAINERS[2]);
      const elements = (await hosts[1].execOk(['nft', 'list', 'set', 'inet', 'vxnet-policy', 'allow_in'])).split(' . ').length - 1;
      log(`ruled server has ${opts.rules} rules (${Math.round(elements / 3)} allow_in elements); endpoint start with them took ${startRuledMs} ms`);
      const servers: Record<'ruled' | 'open', FakeContainer> = { ruled, open };
      for (const c of [ruled, open]) children.push(await startTcpServer(['ip', 'netns', 'exec', c.netns], tool, c.address.split('/')[0], TCP_PORT));
      for (const kind of ['ruled', 'open'] as const) {
        if ((await pingRtts(client.netns, servers[kind].address.split('/')[0], 20)).length === 0) throw new Error(`${kind}: no ping answered`);
      }
      const rtts = { ruled: [] as number[], open: [] as number[] };
      const gbps = { ruled: [] as number[], open: [] as number[] };
      for (let r = 0; r < opts.rounds; r++) {
        const order = r % 2 === 0 ? (['ruled', 'open'] as const) : (['open', 'ruled'] as const);
        for (const kind of order) rtts[kind].push(...(await pingRtts(client.netns, servers[kind].address.split('/')[0], opts.pings)));
        for (const kind of order) gbps[kind].push((await tcpStream(['ip', 'netns', 'exec', client.netns], tool, servers[kind].address.split('/')[0], TCP_PORT, opts.seconds)).gbps);
        log(`  round ${r + 1}: TCP ruled ${fmt(gbps.ruled[r], 2)}, open ${fmt(gbps.open[r], 2)} Gbit/s`);
      }
      const ping = { ruled: rounded(summarize(rtts.ruled), 1), open: rounded(summarize(rtts.open), 1) };
      const tcp = { ruled: rounded(summarize(gbps.ruled), 2), open: rounded(summarize(gbps.open), 2) };
      const results = {
        ...resultHeader('policy', started, opts, await machineInfo()),
        tcpTool: tool,
        rules: opts.rules,
        allowInElements: Math.round(elements / 3),
        endpointStartWithRulesMs: startRuledMs,
        pingUs: { ...ping, ratioOfMedians: ratio(ping.ruled.p50, ping.open.p50, 3) },
        tcpGbps: { ...tcp, samples: gbps, ratioOfMedians: ratio(tcp.ruled.p50, tcp.open.p50, 3) },
      };
      fs.mkdirSync(path.dirname(opts.out), { recursive: true });
      fs.writeFileSync(opts.out, `${JSON.stringify(results, null, 2)}\n`);
      process.stdout.write(`\n${textTable(['figure', `${opts.rules} rules p50`, 'no policy p50', 'ratio'], [
        ['ping RTT across hosts (µs)', fmt(ping.ruled.p50, 0), fmt(ping.open.p50, 0), results.pingUs.ratioOfMedians],
        ['TCP single stream (Gbit/s)', fmt(tcp.ruled.p50, 2), fmt(tcp.open.p50, 2), results.tcpGbps.ratioOfMedians],
      ])}\n`);
      log(`results: ${path.relative(process.cwd(), opts.out)}`);
      return 0;
    },
    async () => {
      for (const c of children.splice(0)) if (c.pid !== undefined && c.exitCode === null) process.kill(c.pid, 'SIGTERM');
      for (const c of CONTAINERS) await run('ip', ['netns', 'del', c]);
      for (const d of drivers) await d.stop();
      await etcd?.stop();
      for (const h of [...HOSTS, ETCD]) await downHost(h.name).catch((err: unknown) => log(`downHost ${h.name}: ${(err as Error).message}`));
      if (!underlayExisted) await underlayDown();
    },
  );
}

void main().then((code) => process.exit(code));
