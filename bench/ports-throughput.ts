// TCP throughput through published ports and egress NAT, vxnet beside Docker's own bridge driver,
// in one run on one simulated host (dockerd inside) and an "outside" namespace on the simulated
// underlay (test/helpers/outside-ns.ts: the only outside; never the machine's real network):
//   1. ingress: outside namespace → host underlay address:published port → container
//      (a vxnet container with -p 5301:5201 vs a bridge container with -p 5302:5201)
//   2. egress: container → a server in the outside namespace (vxnet's source NAT vs the bridge's)
// One single-stream TCP test per side, direction and round (iperf3, or bench/lib/tcp-blast without
// it); vxnet and bridge alternate which goes first every round. The container side runs in the
// container's network namespace (nsenter on its pid; the busybox image has no iperf3).
// Prints text and Markdown tables and writes bench/results/ports-throughput-<docker version>.json.
// Nothing is asserted.
//
//   npm run bench:ports-throughput [-- --docker 20|26 --rounds N --seconds S]
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Host, DockerVersion } from '../test/helpers/hosts';
import { upHost, downHost, underlayDown, run, REPO_ROOT } from '../test/helpers/hosts';
import { Outside, upOutside } from '../test/helpers/outside-ns';
import { ensureTestImage, TEST_IMAGE } from '../test/helpers/image';
import { Driver, startDriver, MAIN_JS } from '../test/helpers/vxnet-in-host';
import { paired, Paired, textTable, markdownTable, fmt } from './lib/stats';
import { TcpTool, pickTcpTool, startTcpServer, tcpStream } from './lib/tcp-stream';
import { log, intArg, eachFlag, dockerArg, preflight, runWithCleanup } from './lib/runner';
import { dockerVersions, machineInfo, resultHeader, sourceRevision } from './lib/machine';

interface Options {
  docker: DockerVersion;
  rounds: number;
  seconds: number;
}

const USAGE = `Usage: node dist/bench/ports-throughput.js [--docker 20|26] [--rounds N] [--seconds S]   (build first)

  --docker 20|26   dockerd in the simulated host (default 20)
  --rounds N       measured rounds, each one stream per side and direction (default 6)
  --seconds S      length of each stream, after a first second left out by iperf3 (default 3)

Needs root. Creates host vxt-b7 (20) or vxt-b8 (26) and the outside namespace vxt-btout on the
simulated underlay, removes them at the end.`;

function parseArgs(argv: string[]): Options {
  const o: Options = { docker: '20', rounds: 6, seconds: 3 };
  eachFlag(argv, USAGE, (flag, next) => {
    if (flag === '--docker') o.docker = dockerArg(next());
    else if (flag === '--rounds') o.rounds = intArg(flag, next(), 1);
    else if (flag === '--seconds') o.seconds = intArg(flag, next(), 1);
    else throw new Error(`unknown argument ${flag} (see --help)`);
  });
  return o;
}

const HOSTS: Record<DockerVersion, { name: string; ip: string }> = {
  '20': { name: 'vxt-b7', ip: '172.31.254.107' },
  '26': { name: 'vxt-b8', ip: '172.31.254.108' },
};
const OUTSIDE = { name: 'vxt-btout', cidr: '172.31.254.189/24', link: 'vxubt-out' };
/** The port every server listens on (in each container, in the outside namespace). */
const SERVER_PORT = 5201;

type Kind = 'vxnet' | 'bridge';
const SIDES: Record<Kind, { network: string; driver: string; subnet: string; container: string; hostPort: number }> = {
  vxnet: { network: 'bench-tp-vx', driver: 'vxnet', subnet: '10.250.0.0/16', container: 'tp-vx', hostPort: 5301 },
  bridge: { network: 'bench-tp-br', driver: 'bridge', subnet: '10.251.0.0/16', container: 'tp-br', hostPort: 5302 },
};

/** Both sides each round; which goes first alternates (A B, B A, …), so drift and order effects cancel. */
function order(round: number): Kind[] {
  return round % 2 === 0 ? ['vxnet', 'bridge'] : ['bridge', 'vxnet'];
}

interface Box {
  driver: Driver | null;
  outside: Outside | null;
  /** TCP servers this run started (in the containers and the outside namespace), killed by pid */
  servers: ChildProcess[];
}

interface Container {
  pid: string;
  ip: string;
  mtu: number;
  /** command prefix that enters the container's network namespace */
  enter: string[];
}

async function container(host: Host, kind: Kind): Promise<Container> {
  const s = SIDES[kind];
  await host.dockerOk(['run', '-d', '--name', s.container, '--network', s.network, '-p', `${s.hostPort}:${SERVER_PORT}`, TEST_IMAGE, 'sleep', '3600']);
  const pid = await host.dockerOk(['inspect', '-f', '{{.State.Pid}}', s.container]);
  const ip = await host.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${s.network}").IPAddress}}`, s.container]);
  const enter = ['nsenter', '-t', pid, '-n', '--'];
  const mtu = Number(await host.dockerOk(['exec', s.container, 'cat', '/sys/class/net/eth0/mtu']));
  return { pid, ip, mtu, enter };
}

interface Direction {
  gbps: Paired;
  samples: Record<Kind, number[]>;
  retransmits: Record<Kind, Array<number | null>>;
}

const gbit = (g: number): number => Math.round(g * 1000) / 1000;

function direction(samples: Record<Kind, number[]>, retransmits: Record<Kind, Array<number | null>>): Direction {
  return { gbps: paired(samples.vxnet, samples.bridge, 2), samples: { vxnet: samples.vxnet.map(gbit), bridge: samples.bridge.map(gbit) }, retransmits };
}

/** Packets counted by the nat rules that name `hostPort` in `chain` (DNAT matches a connection's first packet only). */
async function natPackets(host: Host, chain: string, hostPort: number): Promise<number> {
  const out = await host.execOk(['iptables', '-w', '-t', 'nat', '-L', chain, '-n', '-v', '-x']);
  return out.split('\n').filter((l) => l.includes(`dpt:${hostPort}`)).reduce((sum, l) => sum + Number(l.trim().split(/\s+/)[0]), 0);
}

interface Results {
  tcpTool: TcpTool;
  mtu: Record<Kind, number>;
  ingress: Direction & { natConnections: Record<Kind, number> };
  egress: Direction;
}

async function runBench(opts: Options, host: Host, box: Box): Promise<Results> {
  const tool = await pickTcpTool();
  box.outside = await upOutside(OUTSIDE.name, OUTSIDE.cidr, OUTSIDE.link);
  const outside = box.outside;
  await ensureTestImage(host);
  box.driver = await startDriver(host, { VXNET_LOG_LEVEL: 'info' });
  const c = {} as Record<Kind, Container>;
  for (const kind of ['vxnet', 'bridge'] as const) {
    const s = SIDES[kind];
    await host.dockerOk(['network', 'create', '-d', s.driver, ...(kind === 'vxnet' ? ['--ipam-driver', 'vxnet'] : []), '--subnet', s.subnet, s.network]);
    c[kind] = await container(host, kind);
    box.servers.push(await startTcpServer(c[kind].enter, tool, c[kind].ip, SERVER_PORT));
  }
  box.servers.push(await startTcpServer(['ip', 'netns', 'exec', outside.netns], tool, outside.ip, SERVER_PORT));

  const outsideEnter = ['ip', 'netns', 'exec', outside.netns];
  const ingress = (kind: Kind, seconds: number) => tcpStream(outsideEnter, tool, host.ip, SIDES[kind].hostPort, seconds);
  const egress = (kind: Kind, seconds: number) => tcpStream(c[kind].enter, tool, outside.ip, SERVER_PORT, seconds);

  log(`warm-up: one ${opts.seconds} s stream per side and direction (${tool})`);
  for (const kind of order(0)) {
    await ingress(kind, opts.seconds);
    await egress(kind, opts.seconds);
  }
  const natBefore = { vxnet: await natPackets(host, 'VXNET-DNAT', SIDES.vxnet.hostPort), bridge: await natPackets(host, 'DOCKER', SIDES.bridge.hostPort) };

  log(`${opts.rounds} rounds of a ${opts.seconds} s stream per side: outside → ${host.ip}:published port, container → ${outside.ip}`);
  const samples = { ingress: { vxnet: [] as number[], bridge: [] as number[] }, egress: { vxnet: [] as number[], bridge: [] as number[] } };
  const retrans = { ingress: { vxnet: [] as Array<number | null>, bridge: [] as Array<number | null> }, egress: { vxnet: [] as Array<number | null>, bridge: [] as Array<number | null> } };
  for (let r = 0; r < opts.rounds; r++) {
    for (const kind of order(r)) {
      const t = await ingress(kind, opts.seconds);
      samples.ingress[kind].push(t.gbps);
      retrans.ingress[kind].push(t.retransmits);
    }
    for (const kind of order(r)) {
      const t = await egress(kind, opts.seconds);
      samples.egress[kind].push(t.gbps);
      retrans.egress[kind].push(t.retransmits);
    }
    const g = (k: 'ingress' | 'egress', kind: Kind): string => fmt(samples[k][kind][r], 2);
    log(`  round ${r + 1}: ingress vxnet ${g('ingress', 'vxnet')}, bridge ${g('ingress', 'bridge')}; egress vxnet ${g('egress', 'vxnet')}, bridge ${g('egress', 'bridge')} Gbit/s`);
  }
  const natAfter = { vxnet: await natPackets(host, 'VXNET-DNAT', SIDES.vxnet.hostPort), bridge: await natPackets(host, 'DOCKER', SIDES.bridge.hostPort) };
  return {
    tcpTool: tool,
    mtu: { vxnet: c.vxnet.mtu, bridge: c.bridge.mtu },
    // Connections DNATed during the measured rounds (iperf3 opens 2 per test: control + data):
    // the streams went through each driver's published-port rule, not around it.
    ingress: { ...direction(samples.ingress, retrans.ingress), natConnections: { vxnet: natAfter.vxnet - natBefore.vxnet, bridge: natAfter.bridge - natBefore.bridge } },
    egress: direction(samples.egress, retrans.egress),
  };
}

function rows(r: Results): Array<Array<string | number>> {
  const row = (what: string, d: Direction): Array<string | number> => [what, fmt(d.gbps.a.p50, 2), fmt(d.gbps.b.p50, 2), fmt(d.gbps.ratioOfMedians, 2), fmt(d.gbps.medianPairedRatio, 2)];
  return [
    row('outside → host:published port → container', r.ingress),
    row('container → outside (egress NAT)', r.egress),
  ];
}

const HEADER = ['single TCP stream, Gbit/s', 'vxnet p50', 'bridge p50', 'vxnet÷bridge', 'paired'];

function report(r: Results, md: boolean): string {
  const notes = `${r.tcpTool}; container MTU vxnet ${r.mtu.vxnet}, bridge ${r.mtu.bridge}; DNATed connections in the measured rounds: vxnet ${r.ingress.natConnections.vxnet}, bridge ${r.ingress.natConnections.bridge}`;
  return md ? `${markdownTable(HEADER, rows(r))}\n\n${notes}` : `${textTable(HEADER, rows(r))}\n  ${notes}`;
}

async function main(): Promise<number> {
  const pre = preflight(parseArgs, USAGE, 'ports-throughput bench', MAIN_JS);
  if ('code' in pre) return pre.code;
  const opts = pre.opts;
  const { name, ip } = HOSTS[opts.docker];
  const box: Box = { driver: null, outside: null, servers: [] };
  const underlayExisted = fs.existsSync('/run/netns/vxt-ul');
  return runWithCleanup(
    async () => {
      const started = Date.now();
      const machine = await machineInfo();
      const source = await sourceRevision(REPO_ROOT);
      const host = await upHost(name, ip, { docker: opts.docker });
      const results = await runBench(opts, host, box);
      const docker = await dockerVersions(host);
      const out = {
        ...resultHeader('ports-throughput', started, opts, machine),
        source,
        docker,
        host: { name, ip },
        outside: { netns: OUTSIDE.name, ip: OUTSIDE.cidr },
        sides: SIDES,
        units: 'Gbit/s of one TCP stream (received); paired = median over rounds of vxnet ÷ bridge',
        ...results,
      };
      const file = path.join(REPO_ROOT, 'bench', 'results', `ports-throughput-${docker.server.replace(/[^A-Za-z0-9.+_-]/g, '_')}.json`);
      fs.writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
      process.stdout.write(`\n${report(results, false)}\n\n--- Markdown ---\n\n${report(results, true)}\n\n`);
      log(`results: ${path.relative(process.cwd(), file)}`);
      return 0;
    },
    async () => {
      for (const s of box.servers.splice(0)) {
        if (s.pid !== undefined && s.exitCode === null && s.signalCode === null) {
          try {
            process.kill(s.pid, 'SIGTERM');
          } catch {
            /* gone */
          }
        }
      }
      await box.driver?.stop().catch(() => undefined);
      await box.outside?.down().catch(() => undefined);
      // upOutside failed half-way (box.outside unset): its namespace goes by name, its veth with it.
      if (fs.existsSync(`/run/netns/${OUTSIDE.name}`)) await run('ip', ['netns', 'del', OUTSIDE.name]).catch(() => undefined);
      await downHost(name).catch((e: unknown) => log(`downHost ${name}: ${(e as Error).message}`));
      if (!underlayExisted) await underlayDown().catch(() => undefined);
    },
  );
}

void main().then((code) => process.exit(code));
