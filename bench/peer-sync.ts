// Peer programming cost without the kernel or root (issue 13's memory row, the part peers.ts
// owns): one PeerSync over an embedded store with a fake dataplane that keeps FDB and neighbour
// tables like the kernel (so a dump returns every entry), while --endpoints remote endpoint
// records of one active network are written one at a time, a pause after every 40 (so ~250 peer passes
// run for 10,000 records, as in bench:alloc over etcd). Runs the built PeerSync and, with
// --baseline DIST (another build's dist/ folder), that build's, each in a process of its own
// (child runs of this file), and reports CPU seconds, passes, and the process's memory after.
// A benchmark, not a test: nothing is asserted except that both programmed every entry.
//
//   npm run build && node dist/bench/peer-sync.js [--baseline /tmp/base/dist] [--endpoints 10000]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { EmbeddedStore } from '../src/store/embedded';
import { Keys } from '../src/store/json';
import { createLogger } from '../src/log';
import type { Dataplane, FdbEntry, FdbSpec, NeighEntry, NeighSpec } from '../src/network/dataplane-port';
import type { NetworkRecord } from '../src/network/records';
import { textTable, markdownTable } from './lib/stats';
import { intArg, eachFlag, sleep } from './lib/runner';

const USAGE = `Usage: node dist/bench/peer-sync.js [--endpoints N] [--baseline DIST] [--out FILE]
  --endpoints N    remote endpoint records written one at a time (default 10000)
  --baseline DIST  another build's dist/ folder (its dist/src/network/peers.js is used)
  --out FILE       results (default bench/results/peer-sync.json)`;

const BATCH = 40;
const NET: NetworkRecord = { lnet: 'span', vni: 300, ipv4: { subnet: '10.242.0.0/16', gateway: '10.242.0.1', poolId: null }, ipv6: null, mtu: 1450, internal: false };

/** Keeps entries as the kernel would, so listFdb/listNeigh cost what a dump of that size costs in JS. */
function tableDataplane(): Dataplane {
  const fdb = new Map<string, FdbEntry>();
  const neigh = new Map<string, NeighEntry>();
  return {
    async ensureFdb(s: FdbSpec) { fdb.set(`${s.mac}/${s.dst}`, { mac: s.mac, dst: s.dst ?? null, master: false, self: true }); },
    async removeFdb(s: FdbSpec) { fdb.delete(`${s.mac}/${s.dst}`); },
    async listFdb() { return [...fdb.values()].map((e) => ({ ...e })); },
    async ensureNeigh(s: NeighSpec) { neigh.set(s.ip, { ip: s.ip, mac: s.mac, permanent: true }); },
    async removeNeigh(s: { ip: string }) { neigh.delete(s.ip); },
    async listNeigh() { return [...neigh.values()].map((e) => ({ ...e })); },
  } as unknown as Dataplane;
}

interface ChildResult { cpuSeconds: number; wallSeconds: number; passes: number; peers: number; rssMb: number; heapUsedMb: number; heapTotalMb: number }

async function child(peersJs: string, endpoints: number): Promise<ChildResult> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { PeerSync } = require(peersJs) as typeof import('../src/network/peers');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vxt-peersync-'));
  const store = EmbeddedStore.open({ dataDir: dir });
  const keys = new Keys('/vxnet/v1/');
  let passes = 0;
  let peers = 0;
  const log = createLogger('info', new (require('node:stream').Writable)({
    write(chunk: Buffer, _e: string, cb: () => void) {
      for (const line of chunk.toString().split('\n')) {
        if (!line.includes('peer entries synced')) continue;
        passes++;
        peers = Number((JSON.parse(line) as { peers: number }).peers);
      }
      cb();
    },
  }));
  await store.createIfAbsent(keys.host('h2'), JSON.stringify({ vtep: '172.31.0.2', version: 't' }));
  await store.createIfAbsent(keys.network('span'), JSON.stringify(NET));
  const sync = new PeerSync({ store, keys, dataplane: tableDataplane(), host: 'h1', log });
  await sync.start();
  await sync.activate('span', NET);
  const cpu0 = process.cpuUsage();
  const t0 = Date.now();
  for (let i = 0; i < endpoints; i++) {
    const ip = `10.242.${(i + 2) >> 8}.${(i + 2) & 255}`;
    const mac = `02:42:0a:f2:${((i + 2) >> 8).toString(16).padStart(2, '0')}:${((i + 2) & 255).toString(16).padStart(2, '0')}`;
    await store.createIfAbsent(keys.endpoint('span', `e${i}`), JSON.stringify({ networkId: 'n', host: 'h2', vtep: '172.31.0.2', mac, ipv4: `${ip}/16`, ipv6: null }));
    // Records arrive spread out over etcd (bench:alloc: ~250 peer passes for 10,000 records):
    // a pause every BATCH records lets a pass run, as the watch would.
    if (i % BATCH === BATCH - 1) await sleep(20);
  }
  // Every record programmed: one FDB entry each plus the VTEP's all-zero entry (bounded wait).
  for (let i = 0; i < 6000 && peers < endpoints + 1; i++) await sleep(10);
  const cpu = process.cpuUsage(cpu0);
  const wallSeconds = (Date.now() - t0) / 1000;
  const m = process.memoryUsage();
  await sync.close();
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
  const mb = (b: number): number => Math.round(b / 104857.6) / 10;
  return { cpuSeconds: Math.round((cpu.user + cpu.system) / 1e4) / 100, wallSeconds: Math.round(wallSeconds * 10) / 10, passes, peers, rssMb: mb(m.rss), heapUsedMb: mb(m.heapUsed), heapTotalMb: mb(m.heapTotal) };
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args[0] === '--child') {
    process.stdout.write(JSON.stringify(await child(args[1], Number(args[2]))));
    return 0;
  }
  let endpoints = 10000;
  let baseline: string | null = null;
  let out = path.resolve(__dirname, '../../bench/results/peer-sync.json');
  eachFlag(args, USAGE, (flag, next) => {
    if (flag === '--endpoints') endpoints = intArg(flag, next(), 1);
    else if (flag === '--baseline') baseline = path.resolve(next() ?? '');
    else if (flag === '--out') out = path.resolve(next() ?? out);
    else throw new Error(`unknown argument ${flag}`);
  });
  const builds: Array<[string, string]> = [];
  if (baseline) builds.push(['baseline', path.join(baseline, 'src/network/peers.js')]);
  builds.push(['new', path.resolve(__dirname, '../src/network/peers.js')]);
  const results: Record<string, ChildResult> = {};
  for (const [name, js] of builds) {
    results[name] = JSON.parse(execFileSync(process.execPath, [__filename, '--child', js, String(endpoints)], { encoding: 'utf8', maxBuffer: 1 << 20 })) as ChildResult;
    process.stderr.write(`[bench] ${name}: ${JSON.stringify(results[name])}\n`);
  }
  const header = ['build', 'CPU s', 'wall s', 'passes', 'peers at end', 'RSS MB', 'heap used / total MB'];
  const rows = Object.entries(results).map(([n, r]) => [n, r.cpuSeconds, r.wallSeconds, r.passes, r.peers, r.rssMb, `${r.heapUsedMb} / ${r.heapTotalMb}`]);
  process.stdout.write(`\n${textTable(header, rows)}\n\n${markdownTable(header, rows)}\n`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify({ benchmark: 'peer-sync', timestamp: new Date().toISOString(), endpoints, baseline, node: process.version, loadavg: os.loadavg(), results }, null, 2)}\n`);
  return Object.values(results).every((r) => r.peers >= endpoints + 1) ? 0 : 1;
}

void main().then((code) => process.exit(code));
