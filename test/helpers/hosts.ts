// Typed wrapper over test/hosts/host.sh: simulated Docker hosts (netns + private mount namespace +
// own dockerd) on one machine, connected by an underlay bridge. Needs root; see scripts/install-deps.sh.
import { spawn, ChildProcess, SpawnOptions } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

/**
 * The repository root: the nearest folder above this file that holds package.json. The same from
 * test/helpers (ts-jest) and from dist/test/helpers (compiled, e.g. for bench/).
 */
export const REPO_ROOT = findRepoRoot(__dirname);

function findRepoRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

export const HOST_SH = path.join(REPO_ROOT, 'test/hosts/host.sh');
/** Debian's docker CLI (20.10, API 1.41): negotiates down with the 26.1 daemon too. */
export const DOCKER_CLI = process.env.DOCKER_CLI || '/usr/bin/docker';

export type DockerVersion = '20' | '26';

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** exit code; null when killed by a signal */
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunOptions {
  /** written to stdin */
  input?: string | Buffer;
  /** kill the command (SIGKILL) after this many ms; default 120 s */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

export interface Host {
  name: string;
  /** underlay address without prefix, e.g. 172.31.254.11 */
  ip: string;
  /** underlay address with prefix, e.g. 172.31.254.11/24 */
  cidr: string;
  netns: string;
  /** pid of the namespace holder: `nsenter -t nsPid -n -m -u` enters the host */
  nsPid: number;
  dockerVersion: DockerVersion | null;
  dockerdPid: number | null;
  /** Unix socket of the host's dockerd, reachable from the machine (null without docker) */
  dockerSocket: string | null;
  /** unix://<dockerSocket> */
  dockerHost: string | null;
  stateDir: string;
  dataRoot: string;
  /** dockerd --exec-root: SandboxKey paths live below it, visible only inside the host */
  execRoot: string;
  dockerLog: string;
  /** docker CLI against this host's dockerd */
  docker(args: string[], opts?: RunOptions): Promise<ExecResult>;
  /** like docker() but throws on a non-zero exit; resolves to trimmed stdout */
  dockerOk(args: string[], opts?: RunOptions): Promise<string>;
  /** run a command inside the host's net+mount+UTS namespaces */
  exec(cmd: string[], opts?: RunOptions): Promise<ExecResult>;
  /** like exec() but throws on a non-zero exit; resolves to trimmed stdout */
  execOk(cmd: string[], opts?: RunOptions): Promise<string>;
}

/** Run a command, collect its output; never rejects on a non-zero exit. */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), code, signal });
    });
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(opts.input ?? '');
  });
}

export function describeFailure(what: string, r: ExecResult): Error {
  return new Error(`${what} failed (code ${r.code}${r.signal ? `, signal ${r.signal}` : ''})\n` +
    `stdout: ${r.stdout.trim()}\nstderr: ${r.stderr.trim()}`);
}

async function hostSh(args: string[], timeoutMs = 180_000): Promise<string> {
  const r = await run('bash', [HOST_SH, ...args], { timeoutMs });
  if (r.code !== 0) throw describeFailure(`host.sh ${args.join(' ')}`, r);
  return r.stdout;
}

function dockerEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.DOCKER_HOST;
  delete env.DOCKER_CONTEXT;
  delete env.DOCKER_TLS_VERIFY;
  delete env.DOCKER_CERT_PATH;
  return env;
}

function parseInfo(text: string): Host {
  const kv: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) kv[m[1]] = m[2];
  }
  if (!kv.NAME || !kv.NS_PID) throw new Error(`host.sh printed no host info:\n${text}`);
  const hasDocker = kv.DOCKER === '20' || kv.DOCKER === '26';
  const host: Host = {
    name: kv.NAME,
    cidr: kv.IP,
    ip: kv.IP.split('/')[0],
    netns: kv.NETNS,
    nsPid: Number(kv.NS_PID),
    dockerVersion: hasDocker ? (kv.DOCKER as DockerVersion) : null,
    dockerdPid: kv.DOCKERD_PID ? Number(kv.DOCKERD_PID) : null,
    dockerSocket: hasDocker ? kv.DOCKER_SOCK : null,
    dockerHost: hasDocker ? kv.DOCKER_HOST : null,
    stateDir: kv.STATE_DIR,
    dataRoot: kv.DATA_ROOT,
    execRoot: kv.EXEC_ROOT,
    dockerLog: kv.LOG,
    docker(args, opts = {}) {
      if (!host.dockerSocket) return Promise.reject(new Error(`host ${host.name} has no dockerd`));
      return run(DOCKER_CLI, ['-H', `unix://${host.dockerSocket}`, ...args], { env: dockerEnv(), ...opts });
    },
    async dockerOk(args, opts) {
      const r = await host.docker(args, opts);
      if (r.code !== 0) throw describeFailure(`[${host.name}] docker ${args.join(' ')}`, r);
      return r.stdout.trim();
    },
    exec(cmd, opts = {}) {
      return run('nsenter', ['-t', String(host.nsPid), '-n', '-m', '-u', '--', ...cmd], opts);
    },
    async execOk(cmd, opts) {
      const r = await host.exec(cmd, opts);
      if (r.code !== 0) throw describeFailure(`[${host.name}] ${cmd.join(' ')}`, r);
      return r.stdout.trim();
    },
  };
  return host;
}

export async function underlayUp(): Promise<void> {
  await hostSh(['underlay-up']);
}

/**
 * Removes the underlay, but only when no host made by host.sh is left (other test files may still
 * use it); force: remove it anyway (attached hosts lose their link).
 */
export async function underlayDown(opts: { force?: boolean } = {}): Promise<void> {
  await hostSh(['underlay-down', ...(opts.force ? ['--force'] : [])]);
}

export interface UpOptions {
  /** dockerd version to run in the host; null = no dockerd. Default '20'. */
  docker?: DockerVersion | null;
}

/**
 * Create host `name` (must start with "vxt-") with underlay address `ip` ("a.b.c.d" = /24, or CIDR).
 * Leftovers of an earlier run with the same name are removed first. The underlay is created if missing.
 */
export async function upHost(name: string, ip: string, opts: UpOptions = {}): Promise<Host> {
  const docker = opts.docker === undefined ? '20' : opts.docker;
  const args = ['up', name, ip, ...(docker ? ['--docker', docker] : ['--no-docker'])];
  return parseInfo(await hostSh(args));
}

/** Current info of a running host (e.g. dockerdPid after a restart). */
export async function hostInfo(name: string): Promise<Host> {
  return parseInfo(await hostSh(['info', name]));
}

/** Stop the host's dockerd (SIGTERM, or SIGKILL with kill: true) and its containerd. Data stays. */
export async function stopDocker(host: Host, opts: { kill?: boolean } = {}): Promise<void> {
  await hostSh(['docker-stop', host.name, ...(opts.kill ? ['--kill'] : [])]);
  host.dockerdPid = null;
}

/** (Re)start the host's dockerd on its existing data; updates host.dockerdPid. */
export async function startDocker(host: Host): Promise<void> {
  const info = parseInfo(await hostSh(['docker-start', host.name]));
  host.dockerdPid = info.dockerdPid;
}

const started = new Map<number, { host: string; child: ChildProcess }>();

/** Kill a process started with startInHost (by pid): SIGTERM, then SIGKILL after graceMs. */
export async function stopInHost(child: ChildProcess, graceMs = 5000, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const pid = child.pid;
  if (pid === undefined) return;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      process.kill(pid, signal);
    } catch {
      /* already gone */
    }
    const t = setTimeout(() => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, graceMs);
    await exited;
    clearTimeout(t);
  }
  started.delete(pid);
}

export type HostProcess = ChildProcess & {
  /** where stdout+stderr go when options.stdio was not given (inside host.stateDir, removed at down) */
  logFile?: string;
};

let seq = 0;

/**
 * Spawn a long-running process (e.g. the vxnet driver) inside the host's network, mount and UTS
 * namespaces, so it sees the host's own /run/docker/plugins and the SandboxKey paths of its dockerd.
 * The ChildProcess pid is the process itself (nsenter execs it; no fork). Unless `options.stdio` is
 * given, stdout+stderr are appended to `child.logFile` (pipes nobody reads would block the process).
 * `env` is merged over process.env. Killed by pid in downHost()/downAll()/stopAllInHosts().
 */
export function startInHost(
  host: Host,
  cmd: string,
  args: string[] = [],
  env: NodeJS.ProcessEnv = {},
  options: SpawnOptions = {},
): HostProcess {
  let logFile: string | undefined;
  let fd: number | undefined;
  if (options.stdio === undefined) {
    logFile = path.join(host.stateDir, `${path.basename(cmd)}-${process.pid}-${++seq}.log`);
    fd = fs.openSync(logFile, 'a');
  }
  const child: HostProcess = spawn('nsenter', ['-t', String(host.nsPid), '-n', '-m', '-u', '--', cmd, ...args], {
    ...options,
    stdio: options.stdio ?? ['ignore', fd!, fd!],
    env: { ...process.env, ...env },
  });
  if (fd !== undefined) fs.closeSync(fd);
  child.logFile = logFile;
  if (child.pid !== undefined) {
    const pid = child.pid;
    started.set(pid, { host: host.name, child });
    child.once('exit', () => started.delete(pid));
  }
  return child;
}

/** Kill every process started by startInHost (in one host, or all). */
export async function stopAllInHosts(hostName?: string): Promise<void> {
  const victims = [...started.values()].filter((s) => !hostName || s.host === hostName);
  await Promise.all(victims.map((s) => stopInHost(s.child, 3000)));
}

/** Stop everything in the host (processes, containers, dockerd, containerd) and remove it. */
/** Takes a host down; `timeoutMs` for host.sh (a host with a thousand containers needs minutes). */
export async function downHost(host: Host | string, timeoutMs?: number): Promise<void> {
  const name = typeof host === 'string' ? host : host.name;
  await stopAllInHosts(name);
  await hostSh(['down', name], timeoutMs);
}

/** Remove every vxt-* host and the underlay. */
export async function downAll(): Promise<void> {
  await stopAllInHosts();
  await hostSh(['down-all']);
}

/** Names of the vxt-* hosts currently up. */
export async function listHosts(): Promise<string[]> {
  return (await hostSh(['list'])).split('\n').map((s) => s.trim()).filter(Boolean);
}
