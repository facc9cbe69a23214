// `docker network create` of N networks at once without --subnet, as parallel CI jobs do:
// vxnet (subnets from VXNET_DEFAULT_POOLS) next to Docker's bridge (Docker's default address
// pools), in one run on one simulated host, alternating which driver goes first per round.
// Per driver and round: wall time until every create returned, how many succeeded, whether the
// subnets were all distinct, and the first error. Then the networks are removed (not timed).
// Writes bench/results/parallel-create-<docker version>-n<count>.json. A benchmark: nothing is asserted.
//
//   npm run build && node dist/bench/parallel-create.js [--docker 20|26] [--count 50] [--rounds 3]
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Host, DockerVersion } from '../test/helpers/hosts';
import { upHost, downHost, underlayDown, REPO_ROOT } from '../test/helpers/hosts';
import { Driver, startDriver, MAIN_JS } from '../test/helpers/vxnet-in-host';
import { parseCidr, overlaps, Cidr } from '../src/ipam/cidr';
import { summarize, rounded, markdownTable, Summary } from './lib/stats';
import { log, nowMs, round1, intArg, eachFlag, dockerArg, preflight, runWithCleanup } from './lib/runner';
import { dockerVersions, machineInfo, sourceRevision, resultHeader } from './lib/machine';

interface Options {
  docker: DockerVersion;
  count: number;
  rounds: number;
}

type Kind = 'vxnet' | 'bridge';

interface Round {
  kind: Kind;
  round: number;
  wallMs: number;
  created: number;
  failed: number;
  distinctSubnets: boolean;
  firstError: string | null;
}

const HOST = { name: 'vxt-b5', ip: '172.31.254.105' };

const USAGE = `Usage: node dist/bench/parallel-create.js [options]     (build first: npm run build)

  --docker 20|26   dockerd in the simulated host (default 26)
  --count N        networks created at once per driver and round (default 50)
  --rounds R       rounds per driver, alternating which goes first (default 3)

Needs root. Creates host ${HOST.name} (${HOST.ip}), runs the built driver in it, removes it at the end.`;

function parseArgs(argv: string[]): Options {
  const o: Options = { docker: '26', count: 50, rounds: 3 };
  eachFlag(argv, USAGE, (flag, next) => {
    if (flag === '--docker') o.docker = dockerArg(next());
    else if (flag === '--count') o.count = intArg(flag, next(), 1);
    else if (flag === '--rounds') o.rounds = intArg(flag, next(), 1);
    else throw new Error(`unknown argument ${flag} (see --help)`);
  });
  return o;
}

function createArgs(kind: Kind, name: string): string[] {
  return kind === 'vxnet' ? ['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', name] : ['network', 'create', name];
}

async function oneRound(host: Host, kind: Kind, round: number, count: number): Promise<Round> {
  const names = Array.from({ length: count }, (_, i) => `vxt-pc-${kind[0]}${round}-${i}`);
  const t0 = nowMs();
  const results = await Promise.all(names.map((n) => host.docker(createArgs(kind, n), { timeoutMs: 300_000 })));
  const wallMs = nowMs() - t0;
  const ok = names.filter((_, i) => results[i].code === 0);
  const firstError = results.find((r) => r.code !== 0)?.stderr.trim().split('\n').pop() ?? null;
  const subnets: Cidr[] = [];
  for (const n of ok) {
    const inspect = JSON.parse(await host.dockerOk(['network', 'inspect', n]))[0] as { IPAM: { Config: Array<{ Subnet: string }> } };
    subnets.push(parseCidr(inspect.IPAM.Config[0].Subnet) as Cidr);
  }
  const distinct = subnets.every((a, i) => subnets.every((b, j) => i === j || !overlaps(a, b)));
  for (const n of ok) await host.dockerOk(['network', 'rm', n]);
  log(`${kind} round ${round}: ${ok.length}/${count} created in ${round1(wallMs)} ms, distinct ${distinct}${firstError ? `; first error: ${firstError}` : ''}`);
  return { kind, round, wallMs: round1(wallMs), created: ok.length, failed: count - ok.length, distinctSubnets: distinct, firstError };
}

async function main(): Promise<number> {
  const pre = preflight(parseArgs, USAGE, 'parallel-create bench', MAIN_JS);
  if ('code' in pre) return pre.code;
  const opts = pre.opts;
  const box: { driver: Driver | null } = { driver: null };
  const underlayExisted = fs.existsSync('/run/netns/vxt-ul');
  return runWithCleanup(
    async () => {
      const started = Date.now();
      const host = await upHost(HOST.name, HOST.ip, { docker: opts.docker });
      const docker = await dockerVersions(host);
      box.driver = await startDriver(host, { VXNET_LOG_LEVEL: 'info' });
      const rounds: Round[] = [];
      for (let r = 0; r < opts.rounds; r++) {
        const order: Kind[] = r % 2 === 0 ? ['vxnet', 'bridge'] : ['bridge', 'vxnet'];
        for (const kind of order) rounds.push(await oneRound(host, kind, r, opts.count));
      }
      const per = (kind: Kind): { wallMs: Summary; created: number[]; allDistinct: boolean } => {
        const mine = rounds.filter((x) => x.kind === kind);
        return { wallMs: rounded(summarize(mine.map((x) => x.wallMs)), 0), created: mine.map((x) => x.created), allDistinct: mine.every((x) => x.distinctSubnets) };
      };
      const summary = { vxnet: per('vxnet'), bridge: per('bridge') };
      const results = {
        ...resultHeader('parallel-create', started, opts, await machineInfo()),
        docker,
        source: await sourceRevision(REPO_ROOT),
        host: { name: host.name, ip: host.ip, dockerVersion: host.dockerVersion },
        units: 'ms',
        rounds,
        summary,
      };
      const file = path.join(REPO_ROOT, 'bench', 'results', `parallel-create-${docker.server.replace(/[^A-Za-z0-9.+_-]/g, '_')}-n${opts.count}.json`);
      fs.writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
      const row = (k: Kind) => [k, `${opts.count}`, summary[k].created.join(' / '), `${summary[k].wallMs.p50}`, summary[k].allDistinct ? 'yes' : 'NO'];
      process.stdout.write(`\n${markdownTable(['driver', 'asked at once', 'created per round', 'wall p50 (ms)', 'subnets distinct'], [row('vxnet'), row('bridge')])}\n`);
      log(`results: ${path.relative(process.cwd(), file)}`);
      return 0;
    },
    async () => {
      await box.driver?.stop().catch(() => undefined);
      await downHost(HOST.name).catch((e: unknown) => log(`downHost: ${(e as Error).message}`));
      if (!underlayExisted) await underlayDown().catch(() => undefined);
    },
  );
}

void main().then((code) => process.exit(code));
