// Plumbing shared by the benchmark runners: logging to stderr, clocks, argument checks, and a
// cleanup that runs once, at the end or on Ctrl-C / SIGTERM.
import * as fs from 'node:fs';
import type { DockerVersion } from '../../test/helpers/hosts';

export function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Monotonic milliseconds (for durations). */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Wall-clock milliseconds since the epoch with sub-ms resolution (to compare with other processes' timestamps). */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

export function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

/** A whole number >= min from a command-line value, or an error naming the flag. */
export function intArg(flag: string, v: string | undefined, min: number): number {
  if (v === undefined || !/^\d+$/.test(v) || Number(v) < min) throw new Error(`${flag} needs a whole number >= ${min}, got ${v ?? 'nothing'}`);
  return Number(v);
}

/** One of `allowed` from a command-line value, or an error naming the flag. */
export function oneOfArg<T extends string>(flag: string, v: string | undefined, allowed: readonly T[]): T {
  if (v === undefined || !(allowed as readonly string[]).includes(v)) throw new Error(`${flag} must be one of ${allowed.join(', ')}, got ${v ?? 'nothing'}`);
  return v as T;
}

/** The value of --docker: 20 or 26, or an error naming the flag. */
export function dockerArg(v: string | undefined): DockerVersion {
  if (v !== '20' && v !== '26') throw new Error(`--docker must be 20 or 26, got ${v ?? 'nothing'}`);
  return v;
}

/**
 * Splits argv into flag/value pairs ("--x v" or "--x=v"); `handle` consumes one flag and calls
 * next() for its value. --help / -h print `usage` and exit.
 */
export function eachFlag(argv: string[], usage: string, handle: (flag: string, next: () => string | undefined) => void): void {
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v: string | undefined;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) {
      v = a.slice(eq + 1);
      a = a.slice(0, eq);
    }
    if (a === '--help' || a === '-h') {
      process.stdout.write(`${usage}\n`);
      process.exit(0);
    }
    handle(a, () => v ?? argv[++i]);
  }
}

/**
 * Runs `body` with `cleanup` guaranteed once afterwards, also on SIGINT/SIGTERM (exit 130).
 * Resolves to body's exit code (1 and the stack on an exception).
 */
export async function runWithCleanup(body: () => Promise<number>, cleanup: () => Promise<void>): Promise<number> {
  const t0 = Date.now();
  let cleaning: Promise<void> | null = null;
  const once = (): Promise<void> =>
    (cleaning ??= (async () => {
      log('cleaning up');
      await cleanup().catch((e: unknown) => log(`cleanup: ${(e as Error).message}`));
    })());
  const onSignal = (sig: NodeJS.Signals): void => {
    log(`${sig}: stopping`);
    void once().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await body();
  } catch (err) {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  } finally {
    await once();
    log(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
}

/**
 * Options from the command line, after checking what every runner needs (root, the built
 * driver); or the exit code to stop with (2), the reason already printed.
 */
export function preflight<O>(parse: (argv: string[]) => O, usage: string, what: string, mainJs: string): { opts: O } | { code: number } {
  let opts: O;
  try {
    opts = parse(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${usage}\n`);
    return { code: 2 };
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write(`${what} needs root (network namespaces)\n`);
    return { code: 2 };
  }
  if (!fs.existsSync(mainJs)) {
    process.stderr.write(`${mainJs} is missing: run "npm run build" first\n`);
    return { code: 2 };
  }
  return { opts };
}
