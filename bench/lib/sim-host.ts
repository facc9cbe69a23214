// The simulated hosts of test/helpers, usable from compiled code (dist/bench/…).
//
// test/helpers/hosts.ts, image.ts and vxnet-in-host.ts find test/hosts/host.sh, image.sh and
// dist/src/main.js relative to their own __dirname, which is right under ts-jest (test/helpers)
// but not once compiled (dist/test/helpers → dist/test/hosts/host.sh, dist/dist/src/main.js).
// This module drives the same scripts from the repository root and reuses everything of
// hosts.ts that does not depend on those paths (run, startInHost, stopInHost, the Host type).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DOCKER_CLI, DockerVersion, Host, HostProcess, RunOptions, describeFailure, run, startInHost, stopInHost } from '../../test/helpers/hosts';
import { REPO_ROOT } from './machine';

export const HOST_SH = path.join(REPO_ROOT, 'test/hosts/host.sh');
export const IMAGE_SH = path.join(REPO_ROOT, 'test/hosts/image.sh');
export const MAIN_JS = path.join(REPO_ROOT, 'dist/src/main.js');
export const TEST_IMAGE = 'vxt-busybox:local';
const SOCKET_IN_HOST = '/run/docker/plugins/vxnet.sock';

async function hostSh(args: string[], timeoutMs = 180_000): Promise<string> {
  const r = await run('bash', [HOST_SH, ...args], { timeoutMs });
  if (r.code !== 0) throw describeFailure(`host.sh ${args.join(' ')}`, r);
  return r.stdout;
}

function dockerEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of ['DOCKER_HOST', 'DOCKER_CONTEXT', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH']) delete env[k];
  return env;
}

/** Same KEY=VALUE parsing and Host object as test/helpers/hosts.ts. */
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
    docker(args: string[], opts: RunOptions = {}) {
      if (!host.dockerSocket) return Promise.reject(new Error(`host ${host.name} has no dockerd`));
      return run(DOCKER_CLI, ['-H', `unix://${host.dockerSocket}`, ...args], { env: dockerEnv(), ...opts });
    },
    async dockerOk(args: string[], opts?: RunOptions) {
      const r = await host.docker(args, opts);
      if (r.code !== 0) throw describeFailure(`[${host.name}] docker ${args.join(' ')}`, r);
      return r.stdout.trim();
    },
    exec(cmd: string[], opts: RunOptions = {}) {
      return run('nsenter', ['-t', String(host.nsPid), '-n', '-m', '-u', '--', ...cmd], opts);
    },
    async execOk(cmd: string[], opts?: RunOptions) {
      const r = await host.exec(cmd, opts);
      if (r.code !== 0) throw describeFailure(`[${host.name}] ${cmd.join(' ')}`, r);
      return r.stdout.trim();
    },
  };
  return host;
}

export async function upHost(name: string, ip: string, docker: DockerVersion): Promise<Host> {
  return parseInfo(await hostSh(['up', name, ip, '--docker', docker]));
}

/** Stops everything in the host (containers, dockerd, leftovers) and removes it. */
export async function downHost(name: string): Promise<void> {
  await hostSh(['down', name]);
}

/** Removes the underlay namespace, but only when no host made by host.sh is left on it. */
export async function underlayDownIfUnused(): Promise<void> {
  await hostSh(['underlay-down']);
}

export async function ensureTestImage(host: Host): Promise<void> {
  if (!host.dockerSocket) throw new Error(`host ${host.name} has no dockerd`);
  const r = await run('bash', [IMAGE_SH, host.dockerSocket, TEST_IMAGE], { timeoutMs: 120_000 });
  if (r.code !== 0) throw describeFailure(`image.sh ${host.name}`, r);
}

export function socketFromOutside(host: Host): string {
  return `/proc/${host.nsPid}/root${SOCKET_IN_HOST}`;
}

export interface Driver {
  proc: HostProcess;
  pid: number;
  logFile: string;
  stop(): Promise<void>;
}

/** Runs the built driver inside the host, as test/helpers/vxnet-in-host.ts does. */
export async function startDriver(host: Host, env: Record<string, string> = {}): Promise<Driver> {
  if (!fs.existsSync(MAIN_JS)) throw new Error(`${MAIN_JS} is missing: run "npm run build" first`);
  const proc = startInHost(host, process.execPath, [MAIN_JS, 'run'], {
    VXNET_DATA_DIR: path.join(host.stateDir, 'vxnet-data'),
    VXNET_SOCKET: SOCKET_IN_HOST,
    VXNET_HOST_ID: host.name,
    ...env,
  });
  const logFile = proc.logFile as string;
  const sock = socketFromOutside(host);
  const readLog = (): string => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '');
  for (let i = 0; i < 100; i++) {
    if (fs.existsSync(sock) && readLog().includes('vxnet listening')) {
      return { proc, pid: proc.pid!, logFile, stop: () => stopInHost(proc, 5000) };
    }
    if (proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const text = readLog();
  await stopInHost(proc, 1000, 'SIGKILL');
  throw new Error(`vxnet did not start in ${host.name}:\n${text}`);
}
