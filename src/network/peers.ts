// Programs what this host must know about endpoints on other hosts, from the store.
//
// For every logical network with a VXLAN device on this host ("active"), the wanted kernel
// state is a pure function of the store: for each remote endpoint that wins its claims (below)
// and whose host is alive, one FDB entry MAC -> VTEP and one permanent neighbour IP -> MAC on
// the VXLAN device, plus one all-zero FDB entry per remote VTEP for broadcast. When a network
// becomes active (or after a restart, a watch gap or a refused change) its device's tables are
// read once and diffed with what is wanted, adding or removing only the difference, so a resync
// never wipes working entries. After that each store event changes only the entries of the
// records it touches (peer-table.ts keeps the wanted state incrementally, with what each changed
// key wanted before, which is what a device in step holds): no full recomputation, no netlink
// dump and no copy of the device's tables per change.
//
// Claims: if two endpoint records claim one IP or one MAC (a container moved and the old
// record is not yet gone), the newest record (highest store revision) wins on every host, and
// an endpoint that is local to this host is never programmed as remote.
//
// Order: entries are added FDB first, then neighbour (once ARP is answered, the frame that
// follows must already have a tunnel), and removed neighbour first, then FDB.
//
// A failing entry is logged and the loop goes on (flannel's event loop does the same): one
// bad record must not stop every other network from converging.
import type { Logger } from '../log';
import type { Store, KeyValue, WatchEvent, Watcher } from '../store/types';
import { decode, Keys } from '../store/json';
import type { Dataplane } from './dataplane-port';
import { decodeEndpoint, NetworkRecord, ownCopy } from './records';
import { vxlanName } from './names';
import { Claim, PeerChanges, PeerTable, claimIps, newerClaim } from './peer-table';

export const ZERO_MAC = '00:00:00:00:00:00';

export interface HostRecord {
  vtep: string;
  version: string;
}

export interface PeerDeps {
  store: Store;
  keys: Keys;
  dataplane: Dataplane;
  host: string;
  log: Logger;
  /** After each pass over a network (the redirect fast path follows the device's entries). */
  onPass?(lnet: string): void;
}

interface FdbWant {
  mac: string;
  dst: string;
}

interface NeighWant {
  ip: string;
  mac: string;
}

export interface PeerState {
  fdb: FdbWant[];
  neigh: NeighWant[];
}

/** What the last diff of one network left programmed on its VXLAN device (for status and metrics). */
export interface ProgrammedPeers {
  lnet: string;
  vni: number;
  /** Unicast and all-zero FDB entries. */
  fdb: number;
  neigh: number;
  /** Remote VTEPs with an all-zero (broadcast) entry. */
  vteps: number;
}

/**
 * The wanted VXLAN-device entries of one network, from scratch: a pure function, the reference
 * the incremental PeerTable (peer-table.ts) is tested against.
 */
export function wantedPeers(endpoints: Claim[], aliveHosts: Map<string, HostRecord>, me: string): PeerState {
  const newestFirst = [...endpoints].sort((a, b) => (newerClaim(a, b) ? -1 : newerClaim(b, a) ? 1 : 0));
  const ipTaken = new Set<string>();
  const macTaken = new Set<string>();
  const fdb = new Map<string, FdbWant>();
  const neigh: NeighWant[] = [];
  for (const c of newestFirst) {
    const ips = claimIps(c.rec);
    const stale = macTaken.has(c.rec.mac) || ips.some((ip) => ipTaken.has(ip));
    macTaken.add(c.rec.mac);
    for (const ip of ips) ipTaken.add(ip);
    if (stale || c.rec.host === me || !aliveHosts.has(c.rec.host) || !c.rec.vtep) continue;
    fdb.set(c.rec.mac, { mac: c.rec.mac, dst: c.rec.vtep });
    fdb.set(`${ZERO_MAC}/${c.rec.vtep}`, { mac: ZERO_MAC, dst: c.rec.vtep });
    for (const ip of ips) neigh.push({ ip, mac: c.rec.mac });
  }
  return { fdb: [...fdb.values()], neigh };
}

/** What one network's VXLAN device holds: read from the kernel, or a device in step's old values of the changed keys. */
interface KernelPeers {
  /** unicast FDB entries: MAC -> VTEP */
  fdb: Map<string, string>;
  /** VTEPs with an all-zero FDB entry */
  zero: Set<string>;
  /** neighbour entries: IP -> MAC */
  neigh: Map<string, string>;
}

/** One network with a VXLAN device here. A new object per activation: a pass of an older one never writes into it. */
interface ActiveNet {
  net: NetworkRecord;
  table: PeerTable;
  /**
   * false: read the device's tables in the next pass (activation, resync, a failed change).
   * true: the device holds what the table wanted at its last takeChanges() (the last pass had no
   * failure), so a pass needs only the changes' old values; no copy of the device's tables is
   * kept.
   */
  synced: boolean;
}

export class PeerSync {
  private readonly hosts = new Map<string, HostRecord>();
  /**
   * Only networks with a device here: another network's endpoints are not kept (the store is
   * listed when a network becomes active), so memory follows this host's networks.
   */
  private readonly active = new Map<string, ActiveNet>();
  private readonly running = new Map<string, Promise<void>>();
  private readonly dirty = new Set<string>();
  private readonly programmedPeers = new Map<string, ProgrammedPeers>();
  private readonly alive = (host: string): boolean => this.hosts.has(host);
  private watchers: Watcher[] = [];
  private closed = false;

  constructor(private readonly deps: PeerDeps) {}

  async start(): Promise<void> {
    const rev = await this.loadAll();
    this.watch(rev);
  }

  /** Hosts, and the endpoints and records of the active networks (none at start). */
  private async loadAll(): Promise<number> {
    const { store, keys } = this.deps;
    const rev = await store.revision();
    const hosts = await store.list(keys.hosts());
    this.hosts.clear();
    for (const kv of hosts) this.applyPut(kv);
    if (this.active.size > 0) {
      const endpoints = await store.list(keys.endpoints());
      for (const [lnet, a] of this.active) {
        const fresh: ActiveNet = { net: a.net, table: new PeerTable(this.deps.host), synced: false };
        this.active.set(lnet, fresh);
      }
      for (const kv of endpoints) this.applyPut(kv);
    }
    return rev;
  }

  private watch(fromRevision: number): void {
    const { store, keys } = this.deps;
    for (const prefix of [keys.endpoints(), keys.hosts(), keys.networks()]) {
      this.watchers.push(
        store.watch(prefix, fromRevision, {
          onEvents: (events) => this.onEvents(events),
          onResync: () => void this.resync(),
        }),
      );
    }
  }

  /** After a watch gap (compaction, restart): reload everything and diff every active network. */
  async resync(): Promise<void> {
    if (this.closed) return;
    this.deps.log.info('peer state resync');
    await this.loadAll();
    await Promise.all([...this.active.keys()].map((lnet) => this.syncNetwork(lnet)));
  }

  private onEvents(events: WatchEvent[]): void {
    const touched = new Set<string>();
    for (const ev of events) {
      try {
        const lnets = ev.type === 'put' ? this.applyPut(ev.kv) : this.applyDelete(ev.key, ev.modRevision);
        for (const l of lnets) touched.add(l);
      } catch (err) {
        this.deps.log.warn({ err, key: ev.type === 'put' ? ev.kv.key : ev.key }, 'bad store event skipped');
      }
    }
    for (const lnet of touched) void this.syncNetwork(lnet);
  }

  /** Applies one record; returns the active networks whose wanted state may have changed. */
  private applyPut(kv: KeyValue): string[] {
    const { keys } = this.deps;
    if (kv.key.startsWith(keys.endpoints())) {
      const [lnet, id] = kv.key.slice(keys.endpoints().length).split('/');
      const a = this.active.get(lnet);
      // Another network's record is not even parsed. A replayed event (the list that activated
      // the network already had this revision or a newer one) changes nothing.
      if (!a || (a.table.get(id)?.rev ?? -1) >= kv.modRevision) return [];
      a.table.put({ id: ownCopy(id), rec: decodeEndpoint(kv), rev: kv.modRevision });
      return [lnet];
    }
    if (kv.key.startsWith(keys.hosts())) {
      const host = kv.key.slice(keys.hosts().length);
      this.hosts.set(host, decode<HostRecord>(kv));
      return this.lnetsOfHost(host);
    }
    if (kv.key.startsWith(keys.networks())) {
      const rec = decode<NetworkRecord>(kv);
      const a = this.active.get(rec.lnet);
      if (!a) return [];
      a.net = rec;
      a.synced = false;
      return [rec.lnet];
    }
    return [];
  }

  private applyDelete(key: string, rev: number): string[] {
    const { keys } = this.deps;
    if (key.startsWith(keys.endpoints())) {
      const [lnet, id] = key.slice(keys.endpoints().length).split('/');
      const a = this.active.get(lnet);
      const cur = a?.table.get(id);
      // A delete older than the record held (listed after it was written again) is history.
      if (!a || !cur || cur.rev > rev) return [];
      a.table.delete(id);
      return [lnet];
    }
    if (key.startsWith(keys.hosts())) {
      const host = key.slice(keys.hosts().length);
      this.hosts.delete(host);
      return this.lnetsOfHost(host);
    }
    return [];
  }

  private lnetsOfHost(host: string): string[] {
    const out: string[] = [];
    for (const [lnet, a] of this.active) if (a.table.hostChanged(host)) out.push(lnet);
    return out;
  }

  /**
   * The network now has a VXLAN device here: program it, and keep it programmed. Every Join
   * calls this; only the first (per device lifetime) reads the store and the kernel, the watch
   * keeps it current after that.
   */
  async activate(lnet: string, net: NetworkRecord): Promise<void> {
    if (this.active.has(lnet)) return;
    const a: ActiveNet = { net, table: new PeerTable(this.deps.host), synced: false };
    this.active.set(lnet, a);
    // Events from now on go into the table; the list brings what came before (replays of the
    // same revisions are ignored either way).
    for (const kv of await this.deps.store.list(this.deps.keys.endpoints(lnet))) {
      if (this.active.get(lnet) === a) this.applyPut(kv);
    }
    await this.syncNetwork(lnet);
  }

  deactivate(lnet: string): void {
    this.active.delete(lnet);
    this.programmedPeers.delete(lnet);
  }

  /** Entries the active networks have on this host, as of their last pass. */
  programmed(): ProgrammedPeers[] {
    return [...this.programmedPeers.values()];
  }

  /** Networks with a VXLAN device here. */
  activeNetworks(): Iterable<string> {
    return this.active.keys();
  }

  /** The remote MACs a network's device is to hold (its wanted unicast FDB entries). */
  remoteMacs(lnet: string): Iterable<string> {
    return this.active.get(lnet)?.table.fdb.keys() ?? [];
  }

  /** Runs one pass at a time per network; events that arrive meanwhile trigger one more. */
  syncNetwork(lnet: string): Promise<void> {
    const running = this.running.get(lnet);
    if (running) {
      this.dirty.add(lnet);
      return running;
    }
    const run = (async () => {
      do {
        this.dirty.delete(lnet);
        await this.passNetwork(lnet);
      } while (this.dirty.has(lnet) && !this.closed);
    })().finally(() => this.running.delete(lnet));
    this.running.set(lnet, run);
    return run;
  }

  /**
   * Brings the device in line with the table. With the device in step (synced), only the keys the
   * table reports as changed are looked at, against their old values; otherwise the tables are
   * read once and everything is diffed (a restart or a rebuilt device never wipes working
   * entries).
   */
  private async passNetwork(lnet: string): Promise<void> {
    const a = this.active.get(lnet);
    if (!a || this.closed) return;
    const { dataplane, log } = this.deps;
    const dev = vxlanName(a.net.vni);
    const started = process.hrtime.bigint();
    a.table.settle(this.alive);
    const changed = a.table.takeChanges();
    let k: KernelPeers;
    // Each is walked twice (removals, then additions): collections, not one-shot iterators.
    let macs: Iterable<string>;
    let ips: Iterable<string>;
    let vteps: Iterable<string>;
    if (a.synced) {
      k = kernelBefore(changed);
      macs = [...changed.macs.keys()];
      ips = [...changed.ips.keys()];
      vteps = [...changed.vteps.keys()];
    } else {
      try {
        k = await readKernelPeers(dataplane, dev);
      } catch (err) {
        log.warn({ err, lnet, dev }, 'cannot read peer entries');
        return;
      }
      // Everything either side holds.
      macs = new Set([...k.fdb.keys(), ...a.table.fdb.keys()]);
      ips = new Set([...k.neigh.keys(), ...a.table.neigh.keys()]);
      vteps = new Set([...k.zero, ...a.table.vteps()]);
    }
    let changes = 0;
    const missed = { fdb: 0, neigh: 0, vteps: 0 };
    let failed = false;
    const attempt = async (what: string, fn: () => Promise<void>, done: () => void, miss?: keyof typeof missed): Promise<void> => {
      try {
        await fn();
        done();
        changes++;
      } catch (err) {
        failed = true;
        if (miss) missed[miss]++;
        log.warn({ err, lnet, dev, what }, 'peer entry change failed');
      }
    };
    const { table } = a;
    const wantedVteps = new Set(table.vteps());
    // Removed neighbour first, then FDB; added FDB first, then neighbour (see the file comment).
    // An IP whose MAC changed, or a MAC whose VTEP changed, is replaced in place by the add.
    for (const ip of ips) {
      if (!table.neigh.has(ip) && k.neigh.has(ip)) await attempt(`neigh del ${ip}`, () => dataplane.removeNeigh({ dev, ip }), () => k.neigh.delete(ip));
    }
    for (const mac of macs) {
      const dst = k.fdb.get(mac);
      if (dst !== undefined && !table.fdb.has(mac)) await attempt(`fdb del ${mac} ${dst}`, () => dataplane.removeFdb({ dev, mac, dst }), () => k.fdb.delete(mac));
    }
    for (const vtep of vteps) {
      if (k.zero.has(vtep) && !wantedVteps.has(vtep)) await attempt(`fdb del ${ZERO_MAC} ${vtep}`, () => dataplane.removeFdb({ dev, mac: ZERO_MAC, dst: vtep }), () => k.zero.delete(vtep));
    }
    for (const mac of macs) {
      const dst = table.fdb.get(mac);
      if (dst !== undefined && k.fdb.get(mac) !== dst) await attempt(`fdb add ${mac} ${dst}`, () => dataplane.ensureFdb({ dev, mac, dst }), () => k.fdb.set(mac, dst), 'fdb');
    }
    for (const vtep of vteps) {
      if (wantedVteps.has(vtep) && !k.zero.has(vtep)) await attempt(`fdb add ${ZERO_MAC} ${vtep}`, () => dataplane.ensureFdb({ dev, mac: ZERO_MAC, dst: vtep }), () => k.zero.add(vtep), 'vteps');
    }
    for (const ip of ips) {
      const mac = table.neigh.get(ip);
      if (mac !== undefined && k.neigh.get(ip) !== mac) await attempt(`neigh add ${ip}`, () => dataplane.ensureNeigh({ dev, ip, mac }), () => k.neigh.set(ip, mac), 'neigh');
    }
    // A network deactivated (or rebuilt) while this pass ran must not come back into the picture.
    if (this.active.get(lnet) !== a) return;
    // A refused change leaves the device's state unknown: read it again in the next pass.
    a.synced = !failed;
    // Every wanted entry is on the device but those whose add failed (the table does not change
    // during a pass: only settle() changes it).
    const vtepCount = wantedVteps.size - missed.vteps;
    this.programmedPeers.set(lnet, { lnet, vni: a.net.vni, fdb: table.fdb.size - missed.fdb + vtepCount, neigh: table.neigh.size - missed.neigh, vteps: vtepCount });
    this.deps.onPass?.(lnet);
    if (changes > 0) {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      log.info({ lnet, dev, changes, ms: Math.round(ms * 100) / 100, peers: table.fdb.size + wantedVteps.size }, 'peer entries synced');
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.watchers) w.close();
    this.watchers = [];
    await Promise.all([...this.running.values()]);
  }
}

function noKernelPeers(): KernelPeers {
  return { fdb: new Map(), zero: new Set(), neigh: new Map() };
}

/** What a device in step holds of the keys that changed: the table's values before the change. */
function kernelBefore(changed: PeerChanges): KernelPeers {
  const k = noKernelPeers();
  for (const [mac, dst] of changed.macs) if (dst !== undefined) k.fdb.set(mac, dst);
  for (const [ip, mac] of changed.ips) if (mac !== undefined) k.neigh.set(ip, mac);
  for (const [vtep, had] of changed.vteps) if (had) k.zero.add(vtep);
  return k;
}

/** The device's unicast and all-zero FDB entries (its own, not the bridge's) and its neighbours. */
async function readKernelPeers(dataplane: Dataplane, dev: string): Promise<KernelPeers> {
  const k = noKernelPeers();
  for (const e of await dataplane.listFdb(dev)) {
    if (!e.self || e.master || e.dst === null) continue;
    if (e.mac === ZERO_MAC) k.zero.add(e.dst);
    else k.fdb.set(e.mac, e.dst);
  }
  for (const n of await dataplane.listNeigh(dev)) k.neigh.set(n.ip, n.mac);
  return k;
}

