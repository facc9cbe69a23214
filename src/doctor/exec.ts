// Runs a tool for a check: an argument array (never a shell string), a time limit after which
// the child is killed by its pid, and the exit code as data rather than an exception.
import { spawn } from 'node:child_process';

export interface CommandResult {
  /** null when killed (time limit) or by a signal. */
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Resolves null when the command does not exist; never rejects on a non-zero exit. */
export function runCommand(cmd: string, args: string[], timeoutMs: number): Promise<CommandResult | null> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(e.code === 'ENOENT' ? null : { code: null, stdout: '', stderr: e.message, timedOut: false });
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), timedOut });
    });
  });
}

/** The last non-empty line a tool wrote on stderr (or stdout), for a one-line detail. */
export function lastLine(r: CommandResult): string {
  const lines = (text: string): string[] => text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const err = lines(r.stderr);
  const out = lines(r.stdout);
  return err[err.length - 1] ?? out[out.length - 1] ?? (r.timedOut ? 'no answer (killed at the time limit)' : `exit ${r.code ?? 'by signal'}`);
}
