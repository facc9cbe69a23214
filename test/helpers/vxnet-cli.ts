// Runs the built CLI (dist/src/main.js) as an operator would, with only the settings a test gives:
// nothing of the caller's VXNET_* environment leaks in.
import * as fs from 'node:fs';
import { ExecResult, run } from './hosts';
import { MAIN_JS } from './vxnet-in-host';

export interface CliOptions {
  /** Run inside this network namespace (made by the test). */
  netns?: string;
  timeoutMs?: number;
}

export function cliEnv(settings: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: process.env.HOME ?? '/root', ...settings };
}

export function vxnetCli(args: string[], settings: Record<string, string>, opts: CliOptions = {}): Promise<ExecResult> {
  if (!fs.existsSync(MAIN_JS)) throw new Error(`${MAIN_JS} is missing: run "npm run build" first`);
  const argv = [process.execPath, MAIN_JS, ...args];
  const [cmd, ...rest] = opts.netns ? ['ip', 'netns', 'exec', opts.netns, ...argv] : argv;
  return run(cmd, rest, { env: cliEnv(settings), timeoutMs: opts.timeoutMs ?? 30_000 });
}
