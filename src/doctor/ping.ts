// One ICMP echo with the Don't-Fragment bit, through whichever ping the host has. iputils' ping
// forces DF (-M do). busybox's ping has no such flag: its packets carry DF as the kernel sets it
// by default (path MTU discovery on, net.ipv4.ip_no_pmtu_disc=0), which holds for a packet that
// fits the MTU the kernel knows for the route; the doctor says which one it used.
import { runCommand } from './exec';
import { readOrNull } from './files';

export type PingKind = 'iputils' | 'busybox';

export interface PingTool {
  kind: PingKind;
  /** False when busybox ping cannot be relied on to set DF (path MTU discovery is off). */
  df: boolean;
}

export interface PingResult {
  ok: boolean;
  /** Round trip in ms, when it answered. */
  ms: number | null;
}

const PROBE_MS = 2000;
const PMTU_DISC_OFF = '/proc/sys/net/ipv4/ip_no_pmtu_disc';
/** Each ping waits this long for its answer (-W). */
const WAIT_S = 1;
/** An echo of the default size: tells "unreachable" from "too big". */
export const SMALL_PING = 56;

export async function findPing(): Promise<PingTool | null> {
  const iputils = await runCommand('ping', ['-V'], PROBE_MS);
  if (iputils && iputils.code === 0 && /iputils/i.test(iputils.stdout + iputils.stderr)) return { kind: 'iputils', df: true };
  const busybox = await runCommand('busybox', ['ping', '--help'], PROBE_MS);
  if (!busybox || !/ping/i.test(busybox.stdout + busybox.stderr)) return null;
  return { kind: 'busybox', df: readOrNull(PMTU_DISC_OFF)?.trim() !== '1' };
}

/** Pure: the command line for one echo of `size` payload bytes to `target`, from `source`. */
export function pingCommand(tool: PingTool, target: string, size: number, source: string | null): [string, string[]] {
  const common = ['-c', '1', '-W', String(WAIT_S), '-s', String(size), ...(source ? ['-I', source] : [])];
  if (tool.kind === 'iputils') return ['ping', ['-n', '-M', 'do', ...common, target]];
  return ['busybox', ['ping', ...common, target]];
}

/** Pure: the round trip from ping's output ("time=0.123 ms"), or null. */
export function parseRtt(stdout: string): number | null {
  const m = /time[=<]([\d.]+) ?ms/.exec(stdout);
  return m ? Number(m[1]) : null;
}

export async function ping(tool: PingTool, target: string, size: number, source: string | null): Promise<PingResult> {
  const [cmd, args] = pingCommand(tool, target, size, source);
  const r = await runCommand(cmd, args, (WAIT_S + 1) * 1000);
  const ok = r !== null && r.code === 0;
  return { ok, ms: ok ? parseRtt(r.stdout) : null };
}
