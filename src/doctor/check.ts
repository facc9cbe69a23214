// What one doctor check is and how the checks run: one after another, each under its own time
// limit, so a host that hangs somewhere (etcd behind a dropping firewall, a wedged dockerd) still
// gets a full report within seconds.
import { causeText } from '../errors';

export type CheckStatus = 'PASS' | 'WARN' | 'FAIL';

export interface CheckResult {
  name: string;
  status: CheckStatus;
  /** What was found, in one line. */
  detail: string;
  /** What to change, for WARN and FAIL. */
  fix?: string;
}

/** A check's answer before it is named. */
export type Verdict = Omit<CheckResult, 'name'>;

export interface Check<C> {
  name: string;
  /** Default CHECK_TIMEOUT_MS. */
  timeoutMs?: number;
  /** The fix to print when the check runs out of time. */
  timeoutFix?: string;
  run(ctx: C): Promise<Verdict>;
}

/** No check may take longer than this. */
export const CHECK_TIMEOUT_MS = 5000;

export function pass(detail: string): Verdict {
  return { status: 'PASS', detail };
}

export function warn(detail: string, fix?: string): Verdict {
  return fix === undefined ? { status: 'WARN', detail } : { status: 'WARN', detail, fix };
}

export function fail(detail: string, fix: string): Verdict {
  return { status: 'FAIL', detail, fix };
}

/** A check that throws or runs out of time fails with what happened; the next one still runs. */
export async function runChecks<C>(checks: Check<C>[], ctx: C): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const c of checks) {
    const ms = c.timeoutMs ?? CHECK_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<Verdict>((resolve) => {
      const fix = c.timeoutFix ?? `find out what ${c.name} waits on`;
      timer = setTimeout(() => resolve(fail(`no result within ${ms / 1000} s`, fix)), ms);
    });
    const result = await Promise.race([
      c.run(ctx).catch((err: unknown) => fail(`the check itself failed: ${causeText(err)}`, 'report this as a vxnet bug, with this line')),
      timeout,
    ]);
    clearTimeout(timer);
    out.push({ name: c.name, ...result });
  }
  return out;
}

/** 1 when any check failed: scripts and install steps stop on a broken host, not on a warning. */
export function exitCode(results: CheckResult[]): number {
  return results.some((r) => r.status === 'FAIL') ? 1 : 0;
}
