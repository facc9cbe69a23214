// `vxnet status`: what the store says about hosts and networks, and what this host has programmed,
// gathered in one read-only pass. The CLI prints it as tables (cli/status-format.ts) or as JSON
// for scripts, so the shape here is the JSON contract: add fields, do not rename them.
import type { Store } from '../store/types';
import { listJson, Keys } from '../store/json';
import type { DockerNetworkRecord, EndpointRecord, NetworkRecord } from './records';
import type { HostRecord, ProgrammedPeers } from './peers';
import type { DeadHostRecord } from './dead-hosts';
import type { LastReconcile } from './reconcile-history';

/**
 * One published port of this host (Docker cannot show a remote driver's ports: `docker port`
 * and `docker ps` stay empty, moby/libnetwork#2451). reserved: the driver holds the host port's
 * socket (false after a restart when another process took the port meanwhile).
 */
export interface PortStatus {
  endpoint: string;
  network: string;
  proto: string;
  hostIp: string;
  hostPort: number;
  containerIp: string;
  containerPort: number;
  reserved: boolean;
}

/**
 * alive: hosts/<h> is there (its lease is kept alive). gone: it is not, though the host still
 * owns records (down, or cut off from the store). none: this host runs alone without a lease.
 */
export type LeaseState = 'alive' | 'gone' | 'none';

export interface HostStatus {
  host: string;
  /** From the host's lease record, else from its newest endpoint record. */
  vtep: string | null;
  lease: LeaseState;
  /** deadhosts/<h>: when a live host first saw it without a lease (ISO), and who is releasing it. */
  deadSince: string | null;
  releaseClaimedBy: string | null;
  endpoints: number;
}

export interface NetworkStatus {
  network: string;
  vni: number;
  subnets: string[];
  mtu: number;
  internal: boolean;
  /** Per host that has the network (a Docker network or an endpoint): its endpoint count. */
  endpoints: Record<string, number>;
}

export interface StatusReport {
  self: { host: string; vtep: string | null; store: string; version: string };
  hosts: HostStatus[];
  networks: NetworkStatus[];
  /** null: a single host without a VTEP programs no peers. */
  peers: ProgrammedPeers[] | null;
  /** Published ports on this host (null: the driver serves none). */
  ports: PortStatus[] | null;
  lastReconcile: LastReconcile | null;
}

export interface StatusDeps {
  store: Store;
  keys: Keys;
  self: StatusReport['self'];
  /** Whether this host holds a lease (it registers only with a VTEP). */
  registered: boolean;
  peers: { programmed(): ProgrammedPeers[] } | null;
  lastReconcile(): LastReconcile | null;
  ports?: () => Promise<Array<Omit<PortStatus, 'endpoint'> & { endpointId: string }>>;
}

export async function gatherStatus(deps: StatusDeps): Promise<StatusReport> {
  const { store, keys } = deps;
  const alive = new Map((await listJson<HostRecord>(store, keys.hosts())).map((h) => [h.key.slice(keys.hosts().length), h.value]));
  const dead = new Map((await listJson<DeadHostRecord>(store, keys.deadHosts())).map((d) => [d.key.slice(keys.deadHosts().length), d.value]));
  const endpoints = await listJson<EndpointRecord>(store, keys.endpoints());
  const dnets = await listJson<DockerNetworkRecord>(store, keys.dockerNetworks());
  const networks = await listJson<NetworkRecord>(store, keys.networks());

  const perNetwork = new Map<string, Record<string, number>>();
  const count = (lnet: string, host: string, n: number): void => {
    const hosts = perNetwork.get(lnet) ?? {};
    hosts[host] = (hosts[host] ?? 0) + n;
    perNetwork.set(lnet, hosts);
  };
  for (const d of dnets) count(d.value.lnet, d.key.slice(keys.dockerNetworks().length).split('/')[0], 0);
  const newestVtep = new Map<string, { vtep: string; rev: number }>();
  for (const e of endpoints) {
    count(e.key.slice(keys.endpoints().length).split('/')[0], e.value.host, 1);
    const seen = newestVtep.get(e.value.host);
    if (e.value.vtep && (!seen || seen.rev < e.modRevision)) newestVtep.set(e.value.host, { vtep: e.value.vtep, rev: e.modRevision });
  }

  const names = new Set([deps.self.host, ...alive.keys(), ...dead.keys(), ...newestVtep.keys()]);
  for (const hosts of perNetwork.values()) for (const h of Object.keys(hosts)) names.add(h);
  const hosts = [...names].sort().map((host): HostStatus => {
    const marker = dead.get(host);
    const isSelf = host === deps.self.host;
    return {
      host,
      vtep: isSelf ? deps.self.vtep : alive.get(host)?.vtep ?? newestVtep.get(host)?.vtep ?? null,
      lease: alive.has(host) ? 'alive' : isSelf && !deps.registered ? 'none' : 'gone',
      deadSince: marker ? new Date(marker.since).toISOString() : null,
      releaseClaimedBy: marker?.claimedBy ?? null,
      endpoints: endpoints.filter((e) => e.value.host === host).length,
    };
  });

  return {
    self: deps.self,
    hosts,
    networks: networks
      .map(({ value: n }) => ({
        network: n.lnet,
        vni: n.vni,
        subnets: [n.ipv4, n.ipv6].filter((s) => s !== null).map((s) => s.subnet),
        mtu: n.mtu,
        internal: n.internal,
        endpoints: sortedKeys(perNetwork.get(n.lnet) ?? {}),
      }))
      .sort((a, b) => a.network.localeCompare(b.network)),
    peers: deps.peers ? [...deps.peers.programmed()].sort((a, b) => a.lnet.localeCompare(b.lnet)) : null,
    ports: deps.ports
      ? (await deps.ports())
          .map((p): PortStatus => ({
            endpoint: p.endpointId.slice(0, 12),
            network: p.network,
            proto: p.proto,
            hostIp: p.hostIp,
            hostPort: p.hostPort,
            containerIp: p.containerIp,
            containerPort: p.containerPort,
            reserved: p.reserved,
          }))
          .sort((a, b) => a.hostPort - b.hostPort || a.proto.localeCompare(b.proto) || a.hostIp.localeCompare(b.hostIp))
      : null,
    lastReconcile: deps.lastReconcile(),
  };
}

function sortedKeys(r: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(r).sort(([a], [b]) => a.localeCompare(b)));
}
