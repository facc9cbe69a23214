// Gives memory back once the driver has gone quiet after a burst of work.
//
// Why: V8 sizes its heap for the allocation rate it last saw and keeps that size while the
// process idles. A burst of store events (10,000 endpoint records across 3 hosts) leaves each
// driver with ~110 MB of heap for ~50 MB live and a 32 MB young generation. V8's own memory
// reducer gave it back within 30 s on one host of three (bench:memory, drivers idle); full
// collections once the event loop is idle did on all three (RSS 172/118/158 -> 115/116/119 MB).
// A collection compacts part of the old generation and, allocation being slow by then, shrinks
// the young generation too (V8 does that at a collection when throughput over its last ~5 s is
// low); one was not always enough, so a burst gets up to three, 6 s apart: three 2 s apart left
// a 32 MB young generation in place at 750 networks (bench:memory, at rest).
//
// A collection blocks the event loop (25-120 ms measured for a 50 MB heap on this machine), so
// it runs only after a burst (a check with the loop busy), once the loop has then been almost
// idle for a few checks in a row, a few times per burst at most (as many checks apart), and only
// while V8 holds enough unused heap to be worth it.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { performance, EventLoopUtilization } from 'node:perf_hooks';
import type { Logger } from 'pino';

export interface TrimSettings {
  /** how often the event loop's utilization is looked at */
  checkMs: number;
  /** a check whose loop worked at least this fraction of the time arms the trimmer (a burst) */
  busyUtilization: number;
  /** a check under this fraction counts as idle; between the two, small work (a reconcile retry,
   * a metrics scrape) neither arms nor counts as quiet */
  idleUtilization: number;
  /** this many idle checks in a row after a burst make the driver quiet */
  quietChecks: number;
  /** unused heap (heap total − heap used) below which a collection would give back too little.
   * 8 MB: at 16 a driver with 1,000 networks stopped trimming with 12.6 MB unused (heap total 45.3
   * MB, live 32.7); at 8 its heap total ended at 35.8 MB (bench:memory, at rest) */
  minUnusedBytes: number;
  /** collections at most per burst, quietChecks idle checks apart: V8 gives back part of its
   * unused pages at each full collection (in one measurement 111 -> 66 MB heap, in another
   * 107 -> 103 MB), and shrinks the young generation only once the burst is ~5 s behind */
  maxTrims: number;
}

export const TRIM_DEFAULTS: TrimSettings = { checkMs: 2000, busyUtilization: 0.2, idleUtilization: 0.05, quietChecks: 3, minUnusedBytes: 8 * 1024 * 1024, maxTrims: 3 };

/** What the trimmer remembers between checks; the decision itself is pure (unit-tested). */
export interface TrimState {
  quiet: number;
  /** collections left for the last burst (a driver that only idles is left alone) */
  left: number;
}

export function nextTrimState(s: TrimState, utilization: number, unusedBytes: number, t: TrimSettings): { state: TrimState; trim: boolean } {
  if (utilization >= t.busyUtilization) return { state: { quiet: 0, left: t.maxTrims }, trim: false };
  if (utilization >= t.idleUtilization) return { state: { quiet: 0, left: s.left }, trim: false };
  const quiet = s.quiet + 1;
  // quietChecks apart: V8 shrinks its young generation at a collection only when the allocation
  // rate over its last ~5 s is low, and a window that still holds the burst's allocations is not.
  if (quiet % t.quietChecks === 0 && s.left > 0 && unusedBytes >= t.minUnusedBytes) return { state: { quiet, left: s.left - 1 }, trim: true };
  return { state: { quiet, left: s.left }, trim: false };
}

/**
 * node exposes V8's collector only with --expose-gc on its command line, which not every way of
 * starting the driver passes (systemd unit, managed plugin, scripts/start.sh, NODE_OPTIONS).
 * Setting the flag at run time makes V8 install `gc` in contexts created after it: a new one.
 */
export function collector(): () => void {
  setFlagsFromString('--expose-gc');
  const gc: unknown = runInNewContext('gc');
  if (typeof gc !== 'function') throw new Error('no gc() in a new context after --expose-gc');
  return gc as () => void;
}

export interface MemoryTrim {
  stop(): void;
}

export function startMemoryTrim(log: Logger, settings: TrimSettings = TRIM_DEFAULTS): MemoryTrim {
  let gc: () => void;
  try {
    gc = collector();
  } catch (err) {
    // A node that no longer lets the flag be set at run time: the driver runs on, without trims.
    log.warn({ err }, 'V8 collector not available: memory is not given back after bursts');
    return { stop: () => undefined };
  }
  let state: TrimState = { quiet: 0, left: settings.maxTrims };
  let last: EventLoopUtilization = performance.eventLoopUtilization();
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    const utilization = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    const before = process.memoryUsage();
    const next = nextTrimState(state, utilization, before.heapTotal - before.heapUsed, settings);
    state = next.state;
    if (!next.trim) return;
    const started = performance.now();
    gc();
    const ms = Math.round(performance.now() - started);
    const after = process.memoryUsage();
    const mb = (b: number): number => Math.round(b / 104857.6) / 10;
    log.info(
      { ms, heapTotalMb: [mb(before.heapTotal), mb(after.heapTotal)], heapUsedMb: [mb(before.heapUsed), mb(after.heapUsed)], rssMb: [mb(before.rss), mb(after.rss)] },
      'memory trimmed after a busy spell',
    );
    // The collection itself was work: measure the next window from here.
    last = performance.eventLoopUtilization();
  }, settings.checkMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
