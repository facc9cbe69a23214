// Runs the built vxnet driver (dist/) inside a simulated host, as an operator would run it there.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Host, HostProcess, REPO_ROOT, startInHost, stopInHost } from './hosts';
import { EmbeddedStore } from '../../src/store/embedded';
import type { KeyValue } from '../../src/store/types';
import { DRIVER_NODE_OPTIONS } from '../../src/node-options';

export const MAIN_JS = path.join(REPO_ROOT, 'dist/src/main.js');
const SOCKET_IN_HOST = '/run/docker/plugins/vxnet.sock';

export interface Driver {
  proc: HostProcess;
  dataDir: string;
  logFile: string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function driverDataDir(host: Host): string {
  return path.join(host.stateDir, 'vxnet-data');
}

/** The socket as seen from outside the host's mount namespace. */
export function socketFromOutside(host: Host): string {
  return `/proc/${host.nsPid}/root${SOCKET_IN_HOST}`;
}

/**
 * mainJs: another build of the driver (a bench comparing two versions in one run). nodeArgs: flags
 * for node itself (--cpu-prof is refused in NODE_OPTIONS, so a profiling bench passes it here).
 */
export async function startDriver(host: Host, env: Record<string, string> = {}, mainJs = MAIN_JS, nodeArgs: string[] = []): Promise<Driver> {
  if (!fs.existsSync(mainJs)) throw new Error(`${mainJs} is missing: run "npm run build" first`);
  const dataDir = driverDataDir(host);
  const proc = startInHost(host, process.execPath, [...nodeArgs, mainJs, 'run'], {
    VXNET_DATA_DIR: dataDir,
    VXNET_SOCKET: SOCKET_IN_HOST,
    VXNET_HOST_ID: host.name,
    VXNET_LOG_LEVEL: 'debug',
    // As every launcher of vxnet's own starts it (a flag in nodeArgs wins over NODE_OPTIONS).
    NODE_OPTIONS: DRIVER_NODE_OPTIONS,
    ...env,
  });
  const logFile = proc.logFile as string;
  const sock = socketFromOutside(host);
  for (let i = 0; i < 100; i++) {
    if (fs.existsSync(sock) && (await readLog(logFile)).includes('vxnet listening')) {
      return { proc, dataDir, logFile, stop: (signal = 'SIGTERM') => stopInHost(proc, 5000, signal) };
    }
    if (proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const log = await readLog(logFile);
  await stopInHost(proc, 1000, 'SIGKILL');
  throw new Error(`vxnet did not start in ${host.name}:\n${log}`);
}

async function readLog(file: string): Promise<string> {
  try {
    return await fs.promises.readFile(file, 'utf8');
  } catch {
    return '';
  }
}

/** Every key in a stopped driver's embedded store. */
export async function storedKeys(dataDir: string): Promise<KeyValue[]> {
  if (!fs.existsSync(dataDir)) return [];
  const store = EmbeddedStore.open({ dataDir });
  try {
    return await store.list('/');
  } finally {
    await store.close();
  }
}

/** Log lines of the driver, parsed. */
export async function driverLog(d: Driver): Promise<Array<Record<string, unknown>>> {
  return (await readLog(d.logFile))
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
