// RequestPool with a named subnet as the number of pools grows (issue 12: p50 8 → 21 ms from the
// first to the last quarter of 500 pools). The IPAM alone on an embedded store in a temp
// directory, as the driver runs it on one host: N pools one after the other, each also given a
// gateway and --endpoints container addresses (other keys in the store, as on a real host). For
// the built version and, with --baseline DIST_DIR, another build's dist/ (e.g. the previous
// commit's), interleaved per pool so drift hits both alike. No root needed. Nothing asserted.
//
//   npm run build && node dist/bench/request-pool.js [--pools 500] [--baseline /tmp/base/dist]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT } from '../test/helpers/hosts';
import { summarize, rounded, textTable, markdownTable, fmt, Summary } from './lib/stats';
import { log, intArg, eachFlag, round1 } from './lib/runner';
import { machineInfo, sourceRevision, resultHeader } from './lib/machine';

interface Options {
  pools: number;
  endpoints: number;
  baseline: string | null;
  out: string;
}

const USAGE = `Usage: node dist/bench/request-pool.js [options]     (build first: npm run build)

  --pools N        pools requested, each a /24 by --subnet (default 500)
  --endpoints N    container addresses taken in each pool (default 2)
  --baseline DIR   another build's dist/ directory to compare with (e.g. the previous commit's)
  --out FILE       results file (default bench/results/request-pool.json)`;

function parseArgs(argv: string[]): Options {
  const o: Options = { pools: 500, endpoints: 2, baseline: null, out: path.join(REPO_ROOT, 'bench/results/request-pool.json') };
  eachFlag(argv, USAGE, (flag, next) => {
    switch (flag) {
      case '--pools': o.pools = intArg(flag, next(), 4); break;
      case '--endpoints': o.endpoints = intArg(flag, next(), 0); break;
      case '--baseline': o.baseline = path.resolve(next() ?? ''); break;
      case '--out': o.out = path.resolve(next() ?? o.out); break;
      default: throw new Error(`unknown argument ${flag} (see --help)`);
    }
  });
  if (o.pools > 65536) throw new Error('--pools: at most 65536 /24s fit in 10.0.0.0/8');
  return o;
}

/** The few parts of a build this bench needs, loaded from its dist/. */
interface IpamLike {
  requestPool(req: { addressSpace: string; pool: string; subPool: string; options: Record<string, string>; v6: boolean }): Promise<{ poolId: string }>;
  requestAddress(req: { poolId: string; address: string; options: Record<string, string> | null }): Promise<unknown>;
  close?(): void;
}

interface Side {
  name: string;
  ipam: IpamLike;
  close(): Promise<void>;
  ms: number[];
}

function openSide(name: string, dist: string): Side {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { Ipam } = require(path.join(dist, 'src/ipam/ipam.js')) as { Ipam: new (deps: unknown) => IpamLike };
  const { Keys } = require(path.join(dist, 'src/store/json.js')) as { Keys: new (prefix: string) => unknown };
  const { EmbeddedStore } = require(path.join(dist, 'src/store/embedded.js')) as { EmbeddedStore: { open(o: { dataDir: string }): { close(): Promise<void> } } };
  /* eslint-enable @typescript-eslint/no-require-imports */
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `vxnet-bench-pool-${name}-`));
  const store = EmbeddedStore.open({ dataDir: dir });
  const ipam = new Ipam({ store, keys: new Keys('/vxnet/v1/'), host: 'h1', defaultPools: [{ base: '10.128.0.0/9', size: 24 }], hostRoutes: async () => [] });
  return {
    name,
    ipam,
    ms: [],
    close: async () => {
      ipam.close?.();
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function quarters(ms: number[]): Summary[] {
  const q = Math.floor(ms.length / 4);
  return [0, 1, 2, 3].map((i) => rounded(summarize(ms.slice(i * q, i === 3 ? ms.length : (i + 1) * q)), 2));
}

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const started = Date.now();
  const sides = [openSide('new', path.join(REPO_ROOT, 'dist'))];
  if (opts.baseline) sides.push(openSide('baseline', opts.baseline));
  log(`RequestPool --subnet × ${opts.pools}, ${opts.endpoints} addresses each: ${sides.map((s) => s.name).join(', ')}`);
  try {
    for (let i = 0; i < opts.pools; i++) {
      const subnet = `10.${i >> 8}.${i & 255}.0/24`;
      const order = i % 2 === 0 ? sides : [...sides].reverse();
      for (const s of order) {
        const t0 = process.hrtime.bigint();
        const { poolId } = await s.ipam.requestPool({ addressSpace: 'vxnet-local', pool: subnet, subPool: '', options: {}, v6: false });
        s.ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
        await s.ipam.requestAddress({ poolId, address: '', options: { RequestAddressType: 'com.docker.network.gateway' } });
        for (let e = 0; e < opts.endpoints; e++) await s.ipam.requestAddress({ poolId, address: '', options: null });
      }
    }
  } finally {
    for (const s of sides) await s.close();
  }
  const results = {
    ...resultHeader('request-pool', started, opts, await machineInfo()),
    source: await sourceRevision(REPO_ROOT),
    store: 'embedded (temp directory)',
    sides: Object.fromEntries(sides.map((s) => [s.name, { quarters: quarters(s.ms), lastOverFirstQuarterP50: round1((quarters(s.ms)[3].p50 / quarters(s.ms)[0].p50) * 10) / 10 }])),
  };
  const header = ['build', 'p50 1st quarter (ms)', '2nd', '3rd', '4th', '4th ÷ 1st', 'p90 4th'];
  const rows = sides.map((s) => {
    const q = quarters(s.ms);
    return [s.name, fmt(q[0].p50, 2), fmt(q[1].p50, 2), fmt(q[2].p50, 2), fmt(q[3].p50, 2), (q[3].p50 / q[0].p50).toFixed(2), fmt(q[3].p90, 2)];
  });
  process.stdout.write(`\nRequestPool --subnet, ${opts.pools} pools (embedded store)\n${textTable(header, rows)}\n\n--- Markdown ---\n\n${markdownTable(header, rows)}\n\n`);
  fs.mkdirSync(path.dirname(opts.out), { recursive: true });
  fs.writeFileSync(opts.out, `${JSON.stringify(results, null, 2)}\n`);
  log(`results: ${path.relative(process.cwd(), opts.out) || opts.out}`);
  return 0;
}

void main().then((code) => process.exit(code));
