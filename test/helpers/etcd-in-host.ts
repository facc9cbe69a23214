// etcd inside a simulated host, listening on its underlay address, so drivers in the other
// hosts reach it over the underlay as they would reach a real cluster's etcd. One member, or a
// cluster of several members in the same host (one port pair each), whose members can be
// SIGKILLed and restarted on their data, as when a machine of the cluster crashes and reboots.
import { Host, HostProcess, startInHost, stopInHost } from './hosts';

export const ETCD_PORT = 2379;
/** Member i listens on ETCD_PORT + i * MEMBER_PORT_STEP (client) and the port after it (peer). */
const MEMBER_PORT_STEP = 100;
const HEALTHY_WITHIN_MS = 15_000;

export interface HostEtcd {
  endpoint: string;
  proc: HostProcess;
  stop(): Promise<void>;
}

export interface HostEtcdMember {
  endpoint: string;
  /** SIGKILL, and waits until it is gone. */
  kill(): Promise<void>;
  /** Starts again on the same data (after kill()) and waits until it serves. */
  restart(): Promise<void>;
}

export interface HostEtcdCluster {
  endpoints: string[];
  members: HostEtcdMember[];
  stop(): Promise<void>;
}

export async function startEtcdInHost(host: Host): Promise<HostEtcd> {
  const { members, procs, stop } = await startCluster(host, 1);
  return { endpoint: members[0].endpoint, proc: procs()[0], stop };
}

export async function startEtcdClusterInHost(host: Host, size: number): Promise<HostEtcdCluster> {
  const { members, stop } = await startCluster(host, size);
  return { endpoints: members.map((m) => m.endpoint), members, stop };
}

async function startCluster(host: Host, size: number): Promise<{ members: HostEtcdMember[]; procs: () => HostProcess[]; stop: () => Promise<void> }> {
  const specs = Array.from({ length: size }, (_, i) => ({
    name: `${host.name}-${i}`,
    endpoint: `http://${host.ip}:${ETCD_PORT + i * MEMBER_PORT_STEP}`,
    peer: `http://${host.ip}:${ETCD_PORT + i * MEMBER_PORT_STEP + 1}`,
    dataDir: `${host.stateDir}/etcd-${i}`,
  }));
  const initialCluster = specs.map((s) => `${s.name}=${s.peer}`).join(',');
  const procs: HostProcess[] = [];
  const launch = (i: number): HostProcess => {
    const s = specs[i];
    procs[i] = startInHost(host, '/usr/bin/etcd', [
      '--name', s.name,
      '--data-dir', s.dataDir,
      '--listen-client-urls', s.endpoint,
      '--advertise-client-urls', s.endpoint,
      '--listen-peer-urls', s.peer,
      '--initial-advertise-peer-urls', s.peer,
      '--initial-cluster', initialCluster,
      '--initial-cluster-state', 'new',
      '--log-level', 'error',
      '--logger', 'zap',
    ]);
    return procs[i];
  };
  const stop = async (): Promise<void> => {
    await Promise.all(procs.map((p) => stopInHost(p, 3000)));
  };
  for (const s of specs) await host.execOk(['rm', '-rf', s.dataDir]);
  specs.forEach((_, i) => launch(i));
  // Every member waits for a quorum before it reports healthy: start all, then wait for all.
  try {
    for (let i = 0; i < size; i++) await waitHealthy(host, specs[i].endpoint, procs[i]);
  } catch (err) {
    await Promise.all(procs.map((p) => stopInHost(p, 1000, 'SIGKILL')));
    throw err;
  }
  const members = specs.map((s, i) => ({
    endpoint: s.endpoint,
    kill: () => stopInHost(procs[i], 1000, 'SIGKILL'),
    restart: async () => {
      await stopInHost(procs[i], 1000, 'SIGKILL');
      await waitHealthy(host, s.endpoint, launch(i));
    },
  }));
  return { members, procs: () => procs, stop };
}

async function waitHealthy(host: Host, endpoint: string, proc: HostProcess): Promise<void> {
  const until = Date.now() + HEALTHY_WITHIN_MS;
  while (Date.now() < until) {
    const r = await host.exec(['busybox', 'wget', '-q', '-O', '-', `${endpoint}/health`], { timeoutMs: 3000 });
    if (r.code === 0 && r.stdout.includes('"health":"true"')) return;
    if (proc.exitCode !== null) break;
    await new Promise((r2) => setTimeout(r2, 100));
  }
  throw new Error(`etcd ${endpoint} in ${host.name} did not become healthy`);
}
