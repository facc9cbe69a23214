// Runs the firewall tools (iptables, iptables-restore, ipset, nft) and tc for firewall.ts,
// firewall-sets.ts, the nftables tables and the redirect blocks: through spawn (never a shell), with arguments built only from
// validated names, one operation at a time in this process, and `-w` for the xtables lock that
// other processes (dockerd included) take too.
import { spawn } from 'node:child_process';
import { vxError } from '../errors';

export type Tool = 'iptables' | 'iptables-restore' | 'ipset' | 'nft' | 'tc';

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** iptables and ipset exit 1 for "no such rule/chain/set/element" (and "already exists"). */
export const EXIT_NOT_FOUND = 1;

/** Only iptables takes the xtables lock; ipset and nft have no such flag (nft commits one atomic transaction). */
function lockArgs(tool: Tool): string[] {
  return tool === 'iptables' || tool === 'iptables-restore' ? ['-w'] : [];
}

/** Resolves with the exit code; rejects only when the tool cannot be run at all. */
export function runTool(tool: Tool, args: string[], input?: string): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool, [...lockArgs(tool), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => reject(vxError('VXNET_ERR_FIREWALL', `could not run ${tool}: ${e.message}`, e)));
    child.on('close', (code, signal) => {
      resolve({ code: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
    // A tool that exits before reading its input (bad arguments) must not crash us with EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

/** stdout of a run that must succeed; otherwise a VXNET_ERR_FIREWALL naming the action. */
export async function mustRun(tool: Tool, args: string[], action: string, input?: string): Promise<string> {
  const r = await runTool(tool, args, input);
  if (r.code !== 0) throw toolFailed(action, r);
  return r.stdout;
}

export function toolFailed(action: string, r: ToolResult): Error {
  return vxError('VXNET_ERR_FIREWALL', `could not ${action}: ${r.stderr.trim() || `exit ${r.code}`}`);
}

let queue: Promise<unknown> = Promise.resolve();

/**
 * Public operations run one at a time: two interleaved read-then-write sequences would add a
 * rule twice or re-create what the other just removed.
 */
export function exclusive<T>(fn: () => Promise<T>): Promise<T> {
  const next = queue.then(fn);
  queue = next.catch(() => undefined);
  return next;
}
