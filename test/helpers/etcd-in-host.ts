// etcd inside a simulated host, listening on its underlay address, so drivers in the other
// hosts reach it over the underlay as they would reach a real cluster's etcd.
import { Host, HostProcess, startInHost, stopInHost } from './hosts';

export const ETCD_PORT = 2379;
const ETCD_PEER_PORT = 2380;
const HEALTHY_WITHIN_MS = 15_000;

export interface HostEtcd {
  endpoint: string;
  proc: HostProcess;
  stop(): Promise<void>;
}

export async function startEtcdInHost(host: Host): Promise<HostEtcd> {
  const endpoint = `http://${host.ip}:${ETCD_PORT}`;
  const peer = `http://${host.ip}:${ETCD_PEER_PORT}`;
  const dataDir = `${host.stateDir}/etcd`;
  await host.execOk(['rm', '-rf', dataDir]);
  const proc = startInHost(host, '/usr/bin/etcd', [
    '--name', host.name,
    '--data-dir', dataDir,
    '--listen-client-urls', endpoint,
    '--advertise-client-urls', endpoint,
    '--listen-peer-urls', peer,
    '--initial-advertise-peer-urls', peer,
    '--initial-cluster', `${host.name}=${peer}`,
    '--initial-cluster-state', 'new',
    '--log-level', 'error',
    '--logger', 'zap',
  ]);
  const until = Date.now() + HEALTHY_WITHIN_MS;
  while (Date.now() < until) {
    const r = await host.exec(['busybox', 'wget', '-q', '-O', '-', `${endpoint}/health`], { timeoutMs: 3000 });
    if (r.code === 0 && r.stdout.includes('"health":"true"')) {
      return { endpoint, proc, stop: () => stopInHost(proc, 3000) };
    }
    if (proc.exitCode !== null) break;
    await new Promise((r2) => setTimeout(r2, 100));
  }
  await stopInHost(proc, 1000, 'SIGKILL');
  throw new Error(`etcd in ${host.name} did not become healthy`);
}
