import { Writable } from 'node:stream';
import pino from 'pino';
import { collector, nextTrimState, startMemoryTrim, TrimSettings, TrimState } from '../../../src/server/memory-trim';

const MB = 1024 * 1024;
const settings: TrimSettings = { checkMs: 2000, busyUtilization: 0.2, idleUtilization: 0.05, quietChecks: 3, minUnusedBytes: 16 * MB, maxTrims: 1 };

function run(samples: Array<[number, number]>, start: TrimState = { quiet: 0, left: 0 }, t: TrimSettings = settings): boolean[] {
  let s = start;
  return samples.map(([u, unused]) => {
    const r = nextTrimState(s, u, unused, t);
    s = r.state;
    return r.trim;
  });
}

describe('src/server/memory-trim.ts', () => {
  it('collects once the loop has been idle for quietChecks checks after work', () => {
    expect(run([[0.5, 40 * MB], [0.01, 40 * MB], [0.01, 40 * MB], [0.0, 40 * MB]])).toEqual([false, false, false, true]);
  });

  it('collects once per busy spell, again only after new work', () => {
    const idle: [number, number] = [0, 40 * MB];
    expect(run([[0.3, 40 * MB], idle, idle, idle, idle, idle, idle, [0.3, 40 * MB], idle, idle, idle])).toEqual([
      false, false, false, true, false, false, false, false, false, false, true,
    ]);
  });

  it('collects up to maxTrims times per burst, quietChecks idle checks apart, while the unused heap stays above the bar', () => {
    const three = { ...settings, maxTrims: 3 };
    const idle = (unused: number): [number, number] => [0, unused * MB];
    const burst: [number, number] = [0.3, 60 * MB];
    const nine = [idle(60), idle(60), idle(60), idle(50), idle(50), idle(50), idle(40), idle(40), idle(40)];
    expect(run([burst, ...nine, idle(40), idle(40), idle(40)], undefined, three)).toEqual([
      false, false, false, true, false, false, true, false, false, true, false, false, false,
    ]);
    expect(run([burst, idle(60), idle(60), idle(60), idle(10), idle(10), idle(10)], undefined, three)).toEqual([false, false, false, true, false, false, false]);
  });

  it('small work between bursts (a retry, a scrape) delays the collection but does not arm it', () => {
    const idle: [number, number] = [0, 40 * MB];
    const small: [number, number] = [0.1, 40 * MB];
    expect(run([[0.3, 40 * MB], idle, idle, small, idle, idle, idle])).toEqual([false, false, false, false, false, false, true]);
    expect(run([small, idle, idle, idle, small, idle, idle, idle])).toEqual([false, false, false, false, false, false, false, false]);
  });

  it('leaves a heap with little unused space alone, and collects at a later turn when it has grown past the bar', () => {
    expect(run([[0.3, 4 * MB], [0, 4 * MB], [0, 4 * MB], [0, 4 * MB], [0, 20 * MB], [0, 20 * MB], [0, 20 * MB]])).toEqual([false, false, false, false, false, false, true]);
  });

  it('a driver that never worked since its last collection is left alone', () => {
    expect(run([[0, 40 * MB], [0, 40 * MB], [0, 40 * MB], [0, 40 * MB]])).toEqual([false, false, false, false]);
  });

  it('gets V8\'s collector without --expose-gc on the command line', async () => {
    const gc = collector();
    const weak = ((): WeakRef<object> => new WeakRef({ big: new Array(1000).fill('x') }))();
    // A WeakRef's target lives at least until the current job ends.
    await new Promise((r) => setImmediate(r));
    gc();
    expect(weak.deref()).toBeUndefined();
  });

  it('collects for real once the loop goes quiet after a burst, and says what it gave back', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const out = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    });
    const log = pino({ base: null, timestamp: false }, out);
    const trimmed = (): Record<string, unknown> | undefined => lines.find((l) => l.msg === 'memory trimmed after a busy spell');
    const trim = startMemoryTrim(log, { checkMs: 100, busyUtilization: 0.2, idleUtilization: 0.05, quietChecks: 3, minUnusedBytes: 0, maxTrims: 1 });
    try {
      // A burst: the loop busy for 300 ms, leaving garbage behind.
      let junk: Array<{ k: string; v: number[] }> | null = [];
      const busyUntil = Date.now() + 300;
      while (Date.now() < busyUntil) junk.push({ k: `key-${junk.length}`, v: [1, 2, 3] });
      expect(junk.length).toBeGreaterThan(0);
      junk = null;
      for (let i = 0; i < 100 && !trimmed(); i++) await new Promise((r) => setTimeout(r, 100));
    } finally {
      trim.stop();
    }
    const rec = trimmed();
    expect(rec).toBeDefined();
    const [usedBefore, usedAfter] = rec!.heapUsedMb as number[];
    expect(usedAfter).toBeLessThanOrEqual(usedBefore);
    expect(rec!.heapTotalMb).toHaveLength(2);
    expect(rec!.rssMb).toHaveLength(2);
    expect(typeof rec!.ms).toBe('number');
  });
});
