// The embedded store under SIGKILL: a child process writes (create, swap, delete) as fast as it
// can, folding its log into snapshots every 40 records, and is killed at random moments, then
// started again on the same directory. Every write it acknowledged must be there after every
// restart, with the acknowledged value; only the one write in flight at the kill may go either
// way. A torn log line or a half-written snapshot would show up as a failed open or a lost write.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EmbeddedStore } from '../../src/store/embedded';

const EMBEDDED_JS = path.resolve(__dirname, '../../dist/src/store/embedded.js');
const KILLS = Number(process.env.VXT_STORE_KILLS ?? 40);
const KEYS = 60;

// The writer: prints "B <key> <value|-->" before each write and "A" once it returned true.
const WRITER = `
const { EmbeddedStore } = require(${JSON.stringify(EMBEDDED_JS)});
const s = EmbeddedStore.open({ dataDir: process.argv[1], compactEvery: 40 });
let i = Number(process.argv[2]);
(async () => {
  for (;;) {
    i++;
    const key = '/k/' + (i % ${KEYS});
    const cur = await s.get(key);
    const value = 'v' + i;
    let ok;
    if (!cur) { process.stdout.write('B ' + key + ' ' + value + '\\n'); ok = await s.createIfAbsent(key, value); }
    else if (i % 4 === 0) { process.stdout.write('B ' + key + ' --\\n'); ok = await s.delete(key, cur.modRevision); }
    else { process.stdout.write('B ' + key + ' ' + value + '\\n'); ok = await s.compareAndSwap(key, value, cur.modRevision); }
    if (ok) process.stdout.write('A\\n');
  }
})();
`;

interface Run {
  acked: number;
  /** The write begun and not acknowledged when the child died, if any. */
  inFlight: { key: string; value: string | null } | null;
}

/** Runs the writer for `ms`, SIGKILLs it, and applies what it acknowledged to `expected`. */
function writeThenKill(dir: string, start: number, ms: number, expected: Map<string, string | null>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', WRITER, dir, String(start)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    // 'close', not 'exit': 'exit' can come before the pipe's last data has been read, and the
    // lines lost with it made acknowledged writes look like phantom ones (seen once in CI:
    // ~60 writes the store kept that the test never saw).
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') return reject(new Error(`writer exited by itself (${code}): ${err}`));
      let pending: Run['inFlight'] = null;
      let acked = 0;
      for (const line of out.split('\n')) {
        if (line.startsWith('B ')) {
          const [, key, v] = line.split(' ');
          pending = v === undefined ? null : { key, value: v === '--' ? null : v };
        } else if (line === 'A' && pending) {
          expected.set(pending.key, pending.value);
          pending = null;
          acked++;
        }
      }
      resolve({ acked, inFlight: pending });
    });
  });
}

describe('src/store/embedded.ts under SIGKILL', () => {
  let dir = '';
  beforeAll(() => {
    if (!fs.existsSync(EMBEDDED_JS)) throw new Error(`${EMBEDDED_JS} is missing: run "npm run build" first`);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vxnet-crash-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it(`keeps every acknowledged write across ${KILLS} kills`, async () => {
    const expected = new Map<string, string | null>(Array.from({ length: KEYS }, (_, k) => [`/k/${k}`, null]));
    let acked = 0;
    for (let n = 0; n < KILLS; n++) {
      const run = await writeThenKill(dir, n * 1_000_000, 150 + Math.random() * 350, expected);
      acked += run.acked;
      const s = EmbeddedStore.open({ dataDir: dir });
      try {
        const actual = new Map((await s.list('/k/')).map((kv) => [kv.key, kv.value] as const));
        const wrong: string[] = [];
        for (const [key, want] of expected) {
          const got = actual.get(key) ?? null;
          const inFlight = run.inFlight?.key === key;
          if (got !== want && !(inFlight && got === run.inFlight?.value)) wrong.push(`${key}: want ${want}, got ${got}`);
          // Whatever the in-flight write left is the truth from here on.
          if (inFlight) expected.set(key, got);
        }
        expect([n, wrong]).toEqual([n, []]);
      } finally {
        await s.close();
      }
    }
    // eslint-disable-next-line no-console
    console.log(`embedded store: ${KILLS} SIGKILLs during writes, ${acked} acknowledged writes, 0 lost`);
    expect(acked).toBeGreaterThan(KILLS);
  }, 180_000);
});
