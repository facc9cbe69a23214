// Published ports, vxnet beside Docker's own bridge driver, in one run on one simulated host:
//   1. `docker run -d -p 8080:80 …` then `docker rm -f`, vxnet network vs a user bridge network,
//      interleaved round by round (wall time of each command)
//   2. the cost of publishing one more port: ProgramExternalConnectivity as the driver logs it,
//      and the wall time of `docker run -d -p H:80`, first with no port published on the host,
//      then with --published (default 200) ports already published on it
// Prints a text table and writes bench/results/ports-<docker version>.json. Nothing is asserted.
//
//   npm run build && node dist/bench/ports.js [--docker 20|26] [--runs N] [--published M]
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Host, DockerVersion } from '../test/helpers/hosts';
import { upHost, downHost, underlayDown, REPO_ROOT } from '../test/helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../test/helpers/image';
import { Driver, startDriver, MAIN_JS } from '../test/helpers/vxnet-in-host';
import { summarize, rounded, paired, textTable, Summary, Paired } from './lib/stats';
import { readLoggedCalls, callsBetween } from './lib/driver-log';
import { log, nowMs, epochMs, intArg, eachFlag, dockerArg, preflight, runWithCleanup } from './lib/runner';
import { dockerVersions, machineInfo, resultHeader } from './lib/machine';

interface Options {
  docker: DockerVersion;
  runs: number;
  published: number;
}

const HOSTS: Record<DockerVersion, { name: string; ip: string }> = {
  '20': { name: 'vxt-b5', ip: '172.31.254.105' },
  '26': { name: 'vxt-b6', ip: '172.31.254.106' },
};
const VXNET = 'bench-vx';
const BRIDGE = 'bench-br';
/** Ports published per container while filling the host up to --published. */
const PER_CONTAINER = 10;

const USAGE = `Usage: node dist/bench/ports.js [--docker 20|26] [--runs N] [--published M]   (build first)

  --docker 20|26   dockerd in the simulated host (default 20)
  --runs N         measured rounds per figure (default 15), after 2 warm-ups
  --published M    ports already published for the "one more port" figure (default 200)`;

function parseArgs(argv: string[]): Options {
  const o: Options = { docker: '20', runs: 15, published: 200 };
  eachFlag(argv, USAGE, (flag, next) => {
    if (flag === '--docker') o.docker = dockerArg(next());
    else if (flag === '--runs') o.runs = intArg(flag, next(), 1);
    else if (flag === '--published') o.published = intArg(flag, next(), PER_CONTAINER);
    else throw new Error(`unknown argument ${flag} (see --help)`);
  });
  return o;
}

async function timed(host: Host, args: string[]): Promise<number> {
  const t0 = nowMs();
  await host.dockerOk(args);
  return nowMs() - t0;
}

interface OneMore {
  program: Summary;
  dockerRun: Summary;
}

/** `docker run -d -p H:80` for `runs` fresh host ports; the driver's Program time and the wall time. */
async function publishOne(host: Host, driver: Driver, runs: number, firstPort: number, tag: string): Promise<OneMore> {
  const program: number[] = [];
  const wall: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = epochMs();
    wall.push(await timed(host, ['run', '-d', '--name', `${tag}${i}`, '--network', VXNET, '-p', `${firstPort + i}:80`, TEST_IMAGE, 'sleep', '3600']));
    const calls = callsBetween(readLoggedCalls(driver.logFile), start, epochMs() + 50).filter((c) => c.call === 'NetworkDriver.ProgramExternalConnectivity');
    program.push(...calls.map((c) => c.ms));
  }
  return { program: rounded(summarize(program)), dockerRun: rounded(summarize(wall), 1) };
}

interface Results {
  runRm: { run: Paired; rm: Paired };
  oneMore: { first: OneMore; after: OneMore; published: number; natRules: number };
}

async function runBench(opts: Options, host: Host, box: { driver: Driver | null }): Promise<Results> {
  await ensureTestImage(host);
  const driver = await startDriver(host, { VXNET_LOG_LEVEL: 'info', VXNET_TEARDOWN_DELAY: '5' });
  box.driver = driver;
  await host.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', '10.250.0.0/16', VXNET]);
  await host.dockerOk(['network', 'create', '-d', 'bridge', '--subnet', '10.251.0.0/16', BRIDGE]);

  log(`docker run -d -p 8080:80 + rm -f, ${opts.runs} rounds, vxnet and bridge interleaved`);
  const run: Record<string, number[]> = { vx: [], br: [] };
  const rm: Record<string, number[]> = { vx: [], br: [] };
  for (let i = -2; i < opts.runs; i++) {
    for (const [k, net] of [['vx', VXNET], ['br', BRIDGE]] as const) {
      const r = await timed(host, ['run', '-d', '--name', `rr-${k}`, '--network', net, '-p', '8080:80', TEST_IMAGE, 'sleep', '3600']);
      const d = await timed(host, ['rm', '-f', `rr-${k}`]);
      if (i < 0) continue;
      run[k].push(r);
      rm[k].push(d);
    }
  }

  log(`one more port: ${opts.runs} containers with one port each on an empty host`);
  const first = await publishOne(host, driver, opts.runs, 30000, 'first');
  for (let i = 0; i < opts.runs; i++) await host.dockerOk(['rm', '-f', `first${i}`]);
  log(`publishing ${opts.published} ports (${PER_CONTAINER} per container)`);
  for (let c = 0; c < opts.published / PER_CONTAINER; c++) {
    const base = 20000 + c * PER_CONTAINER;
    await host.dockerOk(['run', '-d', '--name', `fill${c}`, '--network', VXNET, '-p', `${base}-${base + PER_CONTAINER - 1}:1000-${1000 + PER_CONTAINER - 1}`, TEST_IMAGE, 'sleep', '3600']);
  }
  const natRules = (await host.execOk(['iptables', '-w', '-t', 'nat', '-S'])).split('\n').filter((l) => l.includes('vxnet-ports:')).length;
  log(`${natRules} nat rules; one more port: ${opts.runs} containers with one port each`);
  const after = await publishOne(host, driver, opts.runs, 31000, 'after');
  return {
    runRm: { run: paired(run.vx, run.br), rm: paired(rm.vx, rm.br) },
    oneMore: { first, after, published: opts.published, natRules },
  };
}

function report(r: Results, published: number): string {
  const p = (x: Paired): Array<string | number> => [x.a.p50, x.b.p50, x.ratioOfMedians, x.medianPairedRatio];
  const o = (x: OneMore): Array<string | number> => [x.program.p50, x.program.p90, x.dockerRun.p50];
  return [
    textTable(['docker …, ms (p50)', 'vxnet', 'bridge', 'vxnet÷bridge', 'paired'], [
      ['run -d -p 8080:80', ...p(r.runRm.run)],
      ['rm -f', ...p(r.runRm.rm)],
    ]),
    '',
    textTable(['one more port', 'Program p50 ms', 'Program p90 ms', 'docker run p50 ms'], [
      ['first (none published)', ...o(r.oneMore.first)],
      [`with ${published} published`, ...o(r.oneMore.after)],
    ]),
  ].join('\n');
}

async function main(): Promise<number> {
  const pre = preflight(parseArgs, USAGE, 'ports bench', MAIN_JS);
  if ('code' in pre) return pre.code;
  const opts = pre.opts;
  const { name, ip } = HOSTS[opts.docker];
  const box: { driver: Driver | null } = { driver: null };
  const underlayExisted = fs.existsSync('/run/netns/vxt-ul');
  return runWithCleanup(
    async () => {
      const started = Date.now();
      const host = await upHost(name, ip, { docker: opts.docker });
      const results = await runBench(opts, host, box);
      const docker = await dockerVersions(host);
      const out = { ...resultHeader('ports', started, opts, await machineInfo()), docker, ...results };
      const file = path.join(REPO_ROOT, 'bench', 'results', `ports-${docker.server.replace(/[^A-Za-z0-9.+_-]/g, '_')}.json`);
      fs.writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
      process.stdout.write(`\n${report(results, opts.published)}\n`);
      log(`results: ${path.relative(process.cwd(), file)}`);
      return 0;
    },
    async () => {
      await box.driver?.stop().catch(() => undefined);
      await downHost(name).catch((e: unknown) => log(`downHost ${name}: ${(e as Error).message}`));
      if (!underlayExisted) await underlayDown().catch(() => undefined);
    },
  );
}

void main().then((code) => process.exit(code));
