// The records a plugin call reads, held in memory (network/store-mirror.ts keeps them current
// from a watch): the logical networks, this host's Docker networks and this host's endpoints.
// Another host's endpoints are not kept here (peers.ts holds what the dataplane needs of them),
// so memory grows with this host's containers, not the cluster's. The policy engine decides
// from the same records (onChange): one copy of each network and local endpoint per driver,
// where a second mirror of its own cost ~1 KB per network and ~600 bytes per local endpoint.
import type { Logger } from '../log';
import type { Store } from '../store/types';
import { decode, Keys } from '../store/json';
import { decodeEndpoint, DockerNetworkRecord, EndpointRecord, mayBeHosts, NetworkRecord } from './records';
import { StoreMirror } from './store-mirror';
import { canonicalIp } from './address-claims';

/**
 * An endpoint keeps its addresses in canonical form (canonicalIp), computed once per record:
 * AddressClaims asks which endpoint holds an address on every CreateEndpoint, and parsing every
 * local record's addresses again per call cost O(endpoints) parses per call (with 3,000
 * endpoints on a host, most of a burst's CPU and garbage).
 */
type Rec = { kind: 'network'; rec: NetworkRecord } | { kind: 'dnet'; rec: DockerNetworkRecord } | { kind: 'endpoint'; rec: EndpointRecord; ips: Array<string | null> };

export interface RecordCacheDeps {
  store: Store;
  keys: Keys;
  host: string;
  log: Logger;
}

export class RecordCache {
  private readonly mirror: StoreMirror<Rec>;
  private readonly listeners: Array<() => void> = [];
  /**
   * This host's endpoint keys by address (canonical): AddressClaims asks on every CreateEndpoint
   * and ReleaseAddress, and a scan of every local record per call cost ~10 s of CPU per driver
   * while 3,300 endpoints were created on it (bench:memory, --cpu-prof).
   */
  private readonly holders = new Map<string, Set<string>>();

  constructor(private readonly deps: RecordCacheDeps) {
    const { keys, host } = deps;
    const mine = mayBeHosts(host);
    this.mirror = new StoreMirror<Rec>({
      store: deps.store,
      prefixes: [keys.networks(), keys.hostDockerNetworks(host), keys.endpoints()],
      parse: (kv) => {
        if (kv.key.startsWith(keys.networks())) return { kind: 'network', rec: decode<NetworkRecord>(kv) };
        if (kv.key.startsWith(keys.hostDockerNetworks(host))) return { kind: 'dnet', rec: decode<DockerNetworkRecord>(kv) };
        if (!mine(kv.value)) return null;
        const ep = decodeEndpoint(kv);
        return ep.host === host ? { kind: 'endpoint', rec: ep, ips: [canonicalIp(ep.ipv4), canonicalIp(ep.ipv6)] } : null;
      },
      log: deps.log,
      onEntry: (key, before, after) => this.index(key, before, after),
      // Another host's endpoint is not held, so its events call no listener.
      onChange: () => {
        for (const fn of this.listeners) fn();
      },
    });
  }

  private index(key: string, before: Rec | undefined, after: Rec | undefined): void {
    const was = before?.kind === 'endpoint' ? before.ips : [];
    const now = after?.kind === 'endpoint' ? after.ips : [];
    for (const ip of was) {
      if (ip === null || now.includes(ip)) continue;
      const keys = this.holders.get(ip);
      keys?.delete(key);
      if (keys?.size === 0) this.holders.delete(ip);
    }
    for (const ip of now) {
      if (ip === null) continue;
      const keys = this.holders.get(ip);
      if (keys) keys.add(key);
      else this.holders.set(ip, new Set([key]));
    }
  }

  /** fn runs after watch events or a (re)load changed the records held. */
  onChange(fn: () => void): void {
    this.listeners.push(fn);
  }

  /** A full list is held (false before start and while a watch resync reloads). */
  isReady(): boolean {
    return this.mirror.isReady();
  }

  /** Resolves once a reload in progress has finished (isReady() then says how it went). */
  whenLoaded(): Promise<void> {
    return this.mirror.whenLoaded();
  }

  start(): Promise<void> {
    return this.mirror.start();
  }

  close(): void {
    this.mirror.close();
  }

  network(lnet: string): NetworkRecord | undefined {
    const r = this.mirror.get(this.deps.keys.network(lnet));
    return r?.kind === 'network' ? r.rec : undefined;
  }

  dockerNetwork(networkId: string): DockerNetworkRecord | undefined {
    const r = this.mirror.get(this.deps.keys.dockerNetwork(this.deps.host, networkId));
    return r?.kind === 'dnet' ? r.rec : undefined;
  }

  /** One of this host's endpoints. */
  endpoint(lnet: string, endpointId: string): EndpointRecord | undefined {
    const r = this.mirror.get(this.deps.keys.endpoint(lnet, endpointId));
    return r?.kind === 'endpoint' ? r.rec : undefined;
  }

  /** Every logical network's record; false when not ready (fn not called). */
  eachNetwork(fn: (rec: NetworkRecord) => void): boolean {
    return this.mirror.each(this.deps.keys.networks(), (_key, r) => {
      if (r.kind === 'network') fn(r.rec);
    });
  }

  /** Every endpoint of this host, with its store key; false when not ready (fn not called). */
  eachEndpoint(fn: (key: string, rec: EndpointRecord) => void): boolean {
    return this.mirror.each(this.deps.keys.endpoints(), (key, r) => {
      if (r.kind === 'endpoint') fn(key, r.rec);
    });
  }

  /**
   * This host's endpoints with ip (canonical) as their IPv4 or IPv6 address, from the index
   * (in the order the cache learned of them); null before the cache is loaded.
   */
  localHolders(ip: string): Array<{ key: string; rec: EndpointRecord }> | null {
    if (!this.mirror.isReady()) return null;
    const out: Array<{ key: string; rec: EndpointRecord }> = [];
    for (const key of this.holders.get(ip) ?? []) {
      const r = this.mirror.get(key);
      if (r?.kind === 'endpoint') out.push({ key, rec: r.rec });
    }
    return out;
  }

  /** The store accepted this process's write of a record. */
  wrote(key: string, raw: string): void {
    this.mirror.noteWrite(key, raw);
  }

  /** This process deleted a record (`deleted`: the store had it). */
  removed(key: string, deleted: boolean): void {
    this.mirror.noteDelete(key, deleted);
  }

  /** Records held (status, tests). */
  size(): number {
    return this.mirror.size();
  }
}
