// Facts about the machine and processes a benchmark ran on, for the results file.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { run } from '../../test/helpers/hosts';
import type { Host } from '../../test/helpers/hosts';

export interface MemoryKb {
  /** resident set size now */
  rssKb: number;
  /** peak resident set size so far (VmHWM) */
  peakKb: number;
  /** RssAnon: the process's own pages (heap, stacks, malloc); the rest is mapped files (node's binary) and shmem */
  anonKb: number;
  threads: number;
}

/** VmRSS and VmHWM of a process, from /proc/<pid>/status. */
export function memoryOf(pid: number): MemoryKb {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, 'm').exec(text);
    if (!m) throw new Error(`/proc/${pid}/status has no ${name}`);
    return Number(m[1]);
  };
  const threads = /^Threads:\s+(\d+)/m.exec(text);
  return { rssKb: field('VmRSS'), peakKb: field('VmHWM'), anonKb: field('RssAnon'), threads: threads ? Number(threads[1]) : 0 };
}

export interface DockerVersions {
  client: string;
  server: string;
  apiVersion: string;
  components: Record<string, string>;
}

export async function dockerVersions(host: Host): Promise<DockerVersions> {
  const v = JSON.parse(await host.dockerOk(['version', '--format', '{{json .}}'])) as {
    Client: { Version: string };
    Server: { Version: string; ApiVersion: string; Components?: Array<{ Name: string; Version: string }> };
  };
  const components: Record<string, string> = {};
  for (const c of v.Server.Components ?? []) components[c.Name] = c.Version;
  return { client: v.Client.Version, server: v.Server.Version, apiVersion: v.Server.ApiVersion, components };
}

export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  memTotalMb: number;
  kernel: string;
  os: string;
  node: string;
  loadavgAtStart: number[];
}

export async function machineInfo(): Promise<MachineInfo> {
  const nproc = Number((await run('nproc', [])).stdout.trim()) || os.cpus().length;
  let osName = os.type();
  try {
    const rel = fs.readFileSync('/etc/os-release', 'utf8');
    osName = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(rel)?.[1] ?? osName;
  } catch {
    /* keep os.type() */
  }
  return {
    nproc,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memTotalMb: Math.round(os.totalmem() / 1048576),
    kernel: os.release(),
    os: osName,
    node: process.version,
    loadavgAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

/** What the driver is built from: the driver's sources, not the bench's own results files. */
const DRIVER_SOURCES = ['src', 'package.json', 'package-lock.json', 'tsconfig.json'];

/** The commit the driver was built from, and whether its tracked sources differ from it (read-only git). */
export async function sourceRevision(repo: string): Promise<{ commit: string | null; dirty: boolean | null }> {
  const head = await run('git', ['-C', repo, 'rev-parse', 'HEAD']).catch(() => null);
  if (!head || head.code !== 0) return { commit: null, dirty: null };
  const st = await run('git', ['-C', repo, 'status', '--porcelain', '--untracked-files=no', '--', ...DRIVER_SOURCES]).catch(() => null);
  return { commit: head.stdout.trim(), dirty: st && st.code === 0 ? st.stdout.trim() !== '' : null };
}

/** User + system CPU seconds a process has used so far (/proc/<pid>/stat; clock ticks of 1/100 s). */
export function cpuSecondsOf(pid: number): number {
  const f = cpuTicks(pid);
  return (f.utime + f.stime) / 100;
}

/** The same, with the children it has waited for (tc, nft, iptables … the driver runs). */
export function cpuSecondsWithChildrenOf(pid: number): number {
  const f = cpuTicks(pid);
  return (f.utime + f.stime + f.cutime + f.cstime) / 100;
}

function cpuTicks(pid: number): { utime: number; stime: number; cutime: number; cstime: number } {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at field 3: utime is 14, stime
  // 15, cutime 16, cstime 17.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  return { utime: rest[11], stime: rest[12], cutime: rest[13], cstime: rest[14] };
}

/** The fields every results file starts with. */
export function resultHeader<O>(benchmark: string, startedMs: number, options: O, machine: MachineInfo) {
  return {
    benchmark,
    timestamp: new Date(startedMs).toISOString(),
    durationSeconds: Math.round((Date.now() - startedMs) / 100) / 10,
    options,
    machine: { ...machine, loadavgAtEnd: os.loadavg().map((x) => Math.round(x * 100) / 100) },
  };
}
