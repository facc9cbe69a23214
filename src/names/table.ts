// The in-memory view every host keeps of the names of all vxnet networks, fed by the store
// watch (names/ and endpoints/). Pure: no IO, unit-tested on its own.
//
// A name answers only while its endpoint record exists too: a host that died (its endpoints
// swept by another host) or a record left behind by a crash stops answering as soon as the
// endpoint is gone, without waiting for anyone to delete the name record.
//
// Of another host's endpoint only its existence is kept: queries come from this host's
// containers only (networkOf), so only their addresses are indexed. Every host sees every
// endpoint of the cluster, and keeping each one's addresses and index entry cost ~660 bytes per
// endpoint (6.6 MB with 10,000; heap snapshot, bench:memory).
//
// Round robin: each lookup of a name with several addresses starts one further along the list
// (sorted first, so every host rotates through the same order).
import type { NameRecord } from './records';
import { normalName } from './records';

/** One of this host's endpoints (its host is the table's). */
export interface LocalEndpoint {
  lnet: string;
  ipv4: string | null;
  ipv6: string | null;
}

export type Family = 4 | 6;

/**
 * The networks whose names a container of this host resolves: the network its query came from
 * first, then the container's other vxnet networks on this host (sorted), as Docker resolves the
 * names of every network a container is on. The container's queries reach vxnet on one network
 * only (its redirect points at one gateway), so the others come from its name records.
 */
export interface Scope {
  readonly lnets: readonly string[];
  /** The lnets joined: what answers are cached under. */
  readonly key: string;
}

/** Source addresses whose scope is kept between two changes of the table. */
const MAX_SCOPES = 4096;

export function oneNetwork(lnet: string): Scope {
  return { lnets: [lnet], key: lnet };
}

export interface Lookup {
  /** false: no container of the network has the name. */
  known: boolean;
  addresses: string[];
}

export interface ServedName {
  lnet: string;
  network: string;
  endpointId: string;
  containerId: string;
  names: string[];
  ipv4: string | null;
  ipv6: string | null;
}

function plain(addr: string | null): string | null {
  return addr ? addr.split('/')[0] : null;
}

export class NameTable {
  /** lnet -> endpointId -> record */
  private readonly names = new Map<string, Map<string, NameRecord>>();
  /** lnet/endpointId -> this host's endpoint, or null for another host's (it exists, that is all). */
  private readonly endpoints = new Map<string, LocalEndpoint | null>();
  /**
   * address -> lnet/endpointId keys of this host's endpoints: every query looks up its source
   * here (networkOf), so it is a hash lookup, not a walk over every endpoint.
   */
  private readonly byAddress = new Map<string, Set<string>>();
  private readonly turn = new Map<string, number>();
  /** containerId -> lnet/endpointId of this host's name records of that container. */
  private readonly byContainer = new Map<string, Set<string>>();
  /** Scopes by source address, valid while `changes` is `scopesAt`: computed once per change. */
  private readonly scopes = new Map<string, Scope | null>();
  private scopesAt = -1;
  private changes = 0;

  /** host: this host's name in the store; only its endpoints' addresses are indexed. */
  constructor(private readonly host: string) {}

  /**
   * Bumped by every change of names or endpoints: what was derived from the table (the encoded
   * answers of answer-cache.ts) is stale once this moved.
   */
  get version(): number {
    return this.changes;
  }

  putName(lnet: string, endpointId: string, rec: NameRecord): void {
    this.changes++;
    let m = this.names.get(lnet);
    if (!m) this.names.set(lnet, (m = new Map()));
    this.unindexContainer(lnet, endpointId, m.get(endpointId));
    m.set(endpointId, { ...rec, names: rec.names.map(normalName), network: normalName(rec.network) });
    if (rec.host !== this.host) return;
    let keys = this.byContainer.get(rec.containerId);
    if (!keys) this.byContainer.set(rec.containerId, (keys = new Set()));
    keys.add(`${lnet}/${endpointId}`);
  }

  deleteName(lnet: string, endpointId: string): void {
    this.changes++;
    const m = this.names.get(lnet);
    if (!m) return;
    this.unindexContainer(lnet, endpointId, m.get(endpointId));
    m.delete(endpointId);
    if (m.size === 0) this.names.delete(lnet);
  }

  private unindexContainer(lnet: string, endpointId: string, old: NameRecord | undefined): void {
    if (!old || old.host !== this.host) return;
    const keys = this.byContainer.get(old.containerId);
    keys?.delete(`${lnet}/${endpointId}`);
    if (keys?.size === 0) this.byContainer.delete(old.containerId);
  }

  putEndpoint(lnet: string, endpointId: string, ep: { host: string; ipv4: string | null; ipv6: string | null }): void {
    if (ep.host !== this.host) {
      this.putRemoteEndpoint(lnet, endpointId);
      return;
    }
    const key = `${lnet}/${endpointId}`;
    this.deleteEndpoint(lnet, endpointId);
    const local: LocalEndpoint = { lnet, ipv4: plain(ep.ipv4), ipv6: plain(ep.ipv6) };
    this.endpoints.set(key, local);
    for (const addr of [local.ipv4, local.ipv6]) {
      if (!addr) continue;
      let keys = this.byAddress.get(addr);
      if (!keys) this.byAddress.set(addr, (keys = new Set()));
      keys.add(key);
    }
  }

  /** Another host's endpoint: its names answer while it exists; nothing else of it is needed. */
  putRemoteEndpoint(lnet: string, endpointId: string): void {
    const key = `${lnet}/${endpointId}`;
    // Already known: a rewrite of its record changes no answer (and keeps the encoded ones).
    if (this.endpoints.get(key) === null) return;
    this.deleteEndpoint(lnet, endpointId);
    this.endpoints.set(key, null);
  }

  deleteEndpoint(lnet: string, endpointId: string): void {
    const key = `${lnet}/${endpointId}`;
    this.changes++;
    const old = this.endpoints.get(key);
    if (old === undefined) return;
    this.endpoints.delete(key);
    for (const addr of [old?.ipv4, old?.ipv6]) {
      if (!addr) continue;
      const keys = this.byAddress.get(addr);
      keys?.delete(key);
      if (keys?.size === 0) this.byAddress.delete(addr);
    }
  }

  clear(): void {
    this.changes++;
    this.names.clear();
    this.endpoints.clear();
    this.byAddress.clear();
    this.byContainer.clear();
  }

  /** The logical network of this host's container address (the source of a query), or null. */
  networkOf(sourceIp: string): string | null {
    return this.sourceEndpoint(sourceIp)?.lnet ?? null;
  }

  /** The network and endpoint ID of this host's endpoint with that address. */
  private sourceEndpoint(sourceIp: string): { lnet: string; endpointId: string } | null {
    const ip = sourceIp.startsWith('::ffff:') ? sourceIp.slice('::ffff:'.length) : sourceIp;
    const keys = this.byAddress.get(ip);
    if (!keys) return null;
    for (const key of keys) {
      const ep = this.endpoints.get(key);
      return ep ? { lnet: ep.lnet, endpointId: key.slice(ep.lnet.length + 1) } : null;
    }
    return null;
  }

  /** The networks a query from this host's container address resolves in (Scope), or null. */
  scopeOf(sourceIp: string): Scope | null {
    if (this.scopesAt !== this.changes) {
      this.scopes.clear();
      this.scopesAt = this.changes;
    }
    let scope = this.scopes.get(sourceIp);
    if (scope === undefined) {
      scope = this.computeScope(sourceIp);
      // Bounded: a query from any address reaches this (unknown ones are cached as null).
      if (this.scopes.size >= MAX_SCOPES) this.scopes.clear();
      this.scopes.set(sourceIp, scope);
    }
    return scope;
  }

  private computeScope(sourceIp: string): Scope | null {
    const source = this.sourceEndpoint(sourceIp);
    if (!source) return null;
    const containerId = this.names.get(source.lnet)?.get(source.endpointId)?.containerId;
    const others = new Set<string>();
    for (const key of containerId === undefined ? [] : (this.byContainer.get(containerId) ?? [])) {
      const lnet = this.endpoints.get(key)?.lnet;
      if (lnet !== undefined && lnet !== source.lnet) others.add(lnet);
    }
    if (others.size === 0) return oneNetwork(source.lnet);
    const lnets = [source.lnet, ...[...others].sort()];
    return { lnets, key: lnets.join(',') };
  }

  /** The first network of the scope where qname (NAME or NAME.NETWORK) is a name, or null. */
  networkKnowing(lnets: readonly string[], qname: string): string | null {
    for (const lnet of lnets) if (this.sortedAddresses(lnet, qname, 4).known) return lnet;
    return null;
  }

  /** Addresses of `qname` (NAME or NAME.NETWORK) on network lnet, rotated one step per call. */
  lookup(lnet: string, qname: string, family: Family): Lookup {
    const found = this.sortedAddresses(lnet, qname, family);
    const sorted = found.addresses;
    if (sorted.length < 2) return found;
    const n = this.rotation(lnet, qname, family, sorted.length);
    return { known: found.known, addresses: [...sorted.slice(n), ...sorted.slice(0, n)] };
  }

  /** Like lookup, in sorted order and without moving the rotation. */
  sortedAddresses(lnet: string, qname: string, family: Family): Lookup {
    const q = normalName(qname);
    const m = this.names.get(lnet);
    if (!m) return { known: false, addresses: [] };
    let known = false;
    const found = new Set<string>();
    for (const [endpointId, rec] of m) {
      if (!this.endpoints.has(`${lnet}/${endpointId}`)) continue;
      if (!rec.names.some((n) => n === q || `${n}.${rec.network}` === q)) continue;
      known = true;
      const addr = family === 4 ? rec.ipv4 : rec.ipv6;
      if (addr) found.add(addr);
    }
    return { known, addresses: [...found].sort() };
  }

  /**
   * Where the next answer for `qname` starts in its `count` sorted addresses, and one step
   * further for the one after (round robin shared by lookup and the answer cache).
   */
  rotation(lnet: string, qname: string, family: Family, count: number): number {
    const key = `${lnet}/${normalName(qname)}/${family}`;
    const n = (this.turn.get(key) ?? 0) % count;
    this.turn.set(key, (n + 1) % count);
    return n;
  }

  /** Whether `qname` is NAME.NETWORK-shaped for a network name lnet's records use. */
  underNetworkName(lnet: string, qname: string): boolean {
    const q = normalName(qname);
    for (const rec of this.names.get(lnet)?.values() ?? []) if (q.endsWith(`.${rec.network}`)) return true;
    return false;
  }

  /** Name records written by `host` (what this host serves), for status. */
  servedBy(host: string): ServedName[] {
    const out: ServedName[] = [];
    for (const [lnet, m] of this.names) {
      for (const [endpointId, rec] of m) {
        if (rec.host !== host) continue;
        out.push({ lnet, network: rec.network, endpointId, containerId: rec.containerId, names: rec.names, ipv4: rec.ipv4, ipv6: rec.ipv6 });
      }
    }
    return out.sort((a, b) => a.network.localeCompare(b.network) || a.names.join().localeCompare(b.names.join()));
  }

  /** Records of `host` for one container: what to delete when it stops. */
  recordsOf(host: string, containerId: string): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (const [lnet, m] of this.names) for (const [ep, rec] of m) if (rec.host === host && rec.containerId === containerId) out.push([lnet, ep]);
    return out;
  }

  /** Every record key [lnet, endpointId] written by `host`. */
  recordsBy(host: string): Array<[string, string, NameRecord]> {
    const out: Array<[string, string, NameRecord]> = [];
    for (const [lnet, m] of this.names) for (const [ep, rec] of m) if (rec.host === host) out.push([lnet, ep, rec]);
    return out;
  }
}
