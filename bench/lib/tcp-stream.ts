// Single-stream TCP throughput between two network namespaces, with iperf3 when the machine has
// it (installed on demand) or bench/lib/tcp-blast otherwise. A namespace is named by the command
// prefix that enters it: ['ip', 'netns', 'exec', NS] or ['nsenter', '-t', PID, '-n', '--'] (a
// container's), so the same tool runs on every side of a comparison.
import * as path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import { run, describeFailure } from '../../test/helpers/hosts';
import { log, sleep } from './runner';

export type TcpTool = 'iperf3' | 'node tcp-blast';

export interface Stream {
  gbps: number;
  /** TCP retransmits of the sender (iperf3 only) */
  retransmits: number | null;
}

const TCP_BLAST = path.join(__dirname, 'tcp-blast.js');

/** iperf3 if present or installable with apt-get; tcp-blast otherwise. */
export async function pickTcpTool(): Promise<TcpTool> {
  const has = async (): Promise<boolean> => (await run('sh', ['-c', 'command -v iperf3'])).code === 0;
  if (await has()) return 'iperf3';
  log('iperf3 missing: apt-get install iperf3');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = (): Promise<unknown> => run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'iperf3'], { timeoutMs: 180_000, env });
  await install();
  if (!(await has())) {
    await run('apt-get', ['update', '-qq'], { timeoutMs: 180_000, env });
    await install();
  }
  if (await has()) return 'iperf3';
  log('iperf3 unavailable: a node TCP stream (bench/lib/tcp-blast) measures throughput instead');
  return 'node tcp-blast';
}

/**
 * Starts a server listening on ip:port inside the namespace `enter` leads to, and waits until it
 * listens. The caller owns the returned process (kill it by pid at the end).
 */
export async function startTcpServer(enter: string[], tool: TcpTool, ip: string, port: number): Promise<ChildProcess> {
  const cmd = tool === 'iperf3' ? ['iperf3', '-s', '-B', ip, '-p', String(port)] : [process.execPath, TCP_BLAST, 'server', ip, String(port)];
  // `ip netns exec` and `nsenter` exec the command: the child's pid is the server's own.
  const child = spawn(enter[0], [...enter.slice(1), ...cmd], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.on('data', () => undefined);
  for (let i = 0; i < 50; i++) {
    const r = await run(enter[0], [...enter.slice(1), 'ss', '-Hltn', `sport = :${port}`]);
    if (r.stdout.trim() !== '') return child;
    if (child.exitCode !== null) break;
    await sleep(100);
  }
  if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGTERM');
  throw new Error(`no ${tool} server listening on ${ip}:${port} (${enter.join(' ')})`);
}

/** One stream of `seconds` from the namespace `enter` leads to, to ip:port (iperf3 leaves out a first second). */
export async function tcpStream(enter: string[], tool: TcpTool, ip: string, port: number, seconds: number): Promise<Stream> {
  const cmd = tool === 'iperf3'
    ? ['iperf3', '-c', ip, '-p', String(port), '-t', String(seconds), '-O', '1', '-J']
    : [process.execPath, TCP_BLAST, 'client', ip, String(port), String(seconds)];
  const r = await run(enter[0], [...enter.slice(1), ...cmd], { timeoutMs: (seconds + 30) * 1000 });
  if (r.code !== 0) throw describeFailure(`${enter.join(' ')} ${cmd.join(' ')}`, r);
  if (tool === 'iperf3') {
    const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number }; sum_sent: { retransmits?: number } } };
    return { gbps: j.end.sum_received.bits_per_second / 1e9, retransmits: j.end.sum_sent.retransmits ?? null };
  }
  return { gbps: (JSON.parse(r.stdout) as { bitsPerSecond: number }).bitsPerSecond / 1e9, retransmits: null };
}
