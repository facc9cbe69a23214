// The store: for etcd, whether it answers and how fast (every plugin call waits on it); for the
// embedded store, whether its directory can be written and whether a driver holds it now.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Config } from '../config';
import { causeText } from '../errors';
import { etcdUnreachable } from '../etcd-settings';
import { directoryProblem } from '../server/socket-dir';
import { Keys } from '../store/json';
import { Check, Verdict, fail, pass, warn } from './check';
import type { DoctorContext } from './context';

const READS = 5;
/** A median read slower than this makes every `docker run` noticeably slower. */
const SLOW_READ_MS = 100;
/** The embedded store's lock file; its name is fixed by src/store/embedded.ts (test/unit/doctor checks both agree). */
export const EMBEDDED_LOCK_FILE = 'store.lock';

/** Pure: median and maximum of some timings. */
export function latencySummary(ms: number[]): { p50: number; max: number } {
  const sorted = [...ms].sort((a, b) => a - b);
  return { p50: sorted[Math.floor((sorted.length - 1) / 2)] ?? 0, max: sorted[sorted.length - 1] ?? 0 };
}

function round(ms: number): string {
  return ms < 10 ? ms.toFixed(1) : String(Math.round(ms));
}

function etcdFix(config: Config): string {
  return `check that etcd runs and that VXNET_ETCD_ENDPOINTS (now ${config.etcdEndpoints.join(',')}) reaches it from this host` +
    (config.etcdCa || config.etcdCert || config.etcdKey ? ', and the TLS files VXNET_ETCD_CA/_CERT/_KEY' : '');
}

async function checkEtcd(ctx: DoctorContext): Promise<Verdict> {
  const { config } = ctx;
  let store;
  try {
    store = await ctx.etcd();
  } catch (err) {
    return fail(etcdUnreachable(config, err).message, etcdFix(config));
  }
  const key = new Keys(config.etcdPrefix).host(config.hostId);
  const times: number[] = [];
  try {
    for (let i = 0; i < READS; i++) {
      const t0 = performance.now();
      await store.get(key);
      times.push(performance.now() - t0);
    }
  } catch (err) {
    return fail(`etcd answered, then a read failed: ${causeText(err)}`, etcdFix(config));
  }
  const { p50, max } = latencySummary(times);
  const detail = `etcd at ${config.etcdEndpoints.join(',')} answers: ${READS} reads p50 ${round(p50)} ms, max ${round(max)} ms`;
  if (p50 > SLOW_READ_MS) return warn(`${detail} (slow: every plugin call waits on etcd)`, "look at etcd's disk and network latency");
  return pass(detail);
}

/** The pid in the lock file when that process is alive: a driver is using the store now. */
export function lockHolder(dataDir: string): number | null {
  let pid: number;
  try {
    pid = Number.parseInt(fs.readFileSync(path.join(dataDir, EMBEDDED_LOCK_FILE), 'utf8'), 10);
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 0) return null;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : null;
  }
}

/** Creates and removes a file: the only sure test that the directory (and its file system) takes writes. */
function writeProblem(dir: string): string | null {
  const probe = path.join(dir, `.vxnet-doctor-${process.pid}`);
  try {
    fs.closeSync(fs.openSync(probe, 'wx', 0o600));
    fs.unlinkSync(probe);
    return null;
  } catch (err) {
    return causeText(err);
  }
}

function checkEmbedded(config: Config): Verdict {
  const dir = config.dataDir;
  const fix = `make ${dir} a directory root can write, or set VXNET_DATA_DIR`;
  if (!fs.existsSync(dir)) {
    const problem = directoryProblem(dir);
    return problem ? fail(`${dir} cannot be created: ${problem}`, fix) : pass(`${dir} does not exist yet: vxnet run creates it`);
  }
  const problem = directoryProblem(dir) ?? writeProblem(dir);
  if (problem) return fail(`${dir}: ${problem}`, fix);
  const holder = lockHolder(dir);
  return pass(`embedded store in ${dir} is writable; ${holder ? `in use by the running driver (pid ${holder})` : 'no driver holds it now'}`);
}

export const storeCheck: Check<DoctorContext> = {
  name: 'store',
  timeoutFix: 'etcd takes too long to answer: check VXNET_ETCD_ENDPOINTS and the network between this host and etcd',
  async run(ctx) {
    return ctx.config.store === 'etcd' ? checkEtcd(ctx) : checkEmbedded(ctx.config);
  },
};
