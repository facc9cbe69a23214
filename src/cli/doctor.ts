// `vxnet doctor [--json] [run options]`: checks this host against what `vxnet run` with the same
// settings needs, one line per check, each failure with the fix to apply. Exit 1 if any check
// failed, so install scripts can stop on a host that cannot work.
import { loadConfig } from '../config';
import { CheckResult, exitCode, runDoctor } from '../doctor';
import { table } from './status-format';

const FIX_SEPARATOR = ' — fix: ';

/** Pure: aligned lines, then a count. */
export function formatDoctor(results: CheckResult[]): string {
  const rows = results.map((r) => [r.status, r.name, r.fix ? `${r.detail}${FIX_SEPARATOR}${r.fix}` : r.detail]);
  const count = (s: CheckResult['status']): number => results.filter((r) => r.status === s).length;
  const summary = `${count('PASS')} passed, ${count('WARN')} warned, ${count('FAIL')} failed`;
  return `${[...table(rows), summary].join('\n')}\n`;
}

/** Pure: the same for scripts; `ok` is what the exit code says. */
export function doctorJson(results: CheckResult[]): string {
  return `${JSON.stringify({ ok: exitCode(results) === 0, checks: results }, null, 2)}\n`;
}

export async function doctorCommand(args: string[]): Promise<number> {
  const json = args.includes('--json');
  const config = loadConfig(args.filter((a) => a !== '--json'), process.env);
  const results = await runDoctor(config);
  process.stdout.write(json ? doctorJson(results) : formatDoctor(results));
  return exitCode(results);
}
