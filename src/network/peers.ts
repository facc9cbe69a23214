// Programs what this host must know about endpoints on other hosts, from the store.
//
// For every logical network with a VXLAN device on this host ("active"), the wanted kernel
// state is a pure function of the store: for each remote endpoint that wins its claims (below)
// and whose host is alive, one FDB entry MAC -> VTEP and one permanent neighbour IP -> MAC on
// the VXLAN device, plus one all-zero FDB entry per remote VTEP for broadcast. syncNetwork()
// diffs that against what the kernel has and adds or removes only the difference, so a resync
// after a restart or a watch gap never wipes working entries.
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
import type { EndpointRecord, NetworkRecord } from './records';
import { vxlanName } from './names';

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
}

interface Claim {
  id: string;
  rec: EndpointRecord;
  rev: number;
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

/** The wanted VXLAN-device entries of one network: a pure function, unit-tested on its own. */
export function wantedPeers(endpoints: Claim[], aliveHosts: Map<string, HostRecord>, me: string): PeerState {
  const newestFirst = [...endpoints].sort((a, b) => b.rev - a.rev);
  const ipTaken = new Set<string>();
  const macTaken = new Set<string>();
  const fdb = new Map<string, FdbWant>();
  const neigh: NeighWant[] = [];
  for (const c of newestFirst) {
    const ips = [c.rec.ipv4, c.rec.ipv6].filter((a): a is string => !!a).map((a) => a.split('/')[0]);
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

export class PeerSync {
  private readonly endpoints = new Map<string, Map<string, Claim>>();
  private readonly hosts = new Map<string, HostRecord>();
  private readonly networks = new Map<string, NetworkRecord>();
  private readonly active = new Set<string>();
  private readonly running = new Map<string, Promise<void>>();
  private readonly dirty = new Set<string>();
  private readonly programmedPeers = new Map<string, ProgrammedPeers>();
  private watchers: Watcher[] = [];
  private closed = false;

  constructor(private readonly deps: PeerDeps) {}

  async start(): Promise<void> {
    const rev = await this.loadAll();
    this.watch(rev);
  }

  private async loadAll(): Promise<number> {
    const { store, keys } = this.deps;
    const rev = await store.revision();
    this.endpoints.clear();
    this.hosts.clear();
    this.networks.clear();
    for (const kv of await store.list(keys.endpoints())) this.applyPut(kv);
    for (const kv of await store.list(keys.hosts())) this.applyPut(kv);
    for (const kv of await store.list(keys.networks())) this.applyPut(kv);
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
    await Promise.all([...this.active].map((lnet) => this.syncNetwork(lnet)));
  }

  private onEvents(events: WatchEvent[]): void {
    const touched = new Set<string>();
    for (const ev of events) {
      try {
        const lnets = ev.type === 'put' ? this.applyPut(ev.kv) : this.applyDelete(ev.key);
        for (const l of lnets) touched.add(l);
      } catch (err) {
        this.deps.log.warn({ err, key: ev.type === 'put' ? ev.kv.key : ev.key }, 'bad store event skipped');
      }
    }
    for (const lnet of touched) if (this.active.has(lnet)) void this.syncNetwork(lnet);
  }

  /** Applies one record; returns the logical networks whose wanted state may have changed. */
  private applyPut(kv: KeyValue): string[] {
    const { keys } = this.deps;
    if (kv.key.startsWith(keys.endpoints())) {
      const [lnet, id] = kv.key.slice(keys.endpoints().length).split('/');
      const rec = decode<EndpointRecord>(kv);
      let m = this.endpoints.get(lnet);
      if (!m) this.endpoints.set(lnet, (m = new Map()));
      m.set(id, { id, rec, rev: kv.modRevision });
      return [lnet];
    }
    if (kv.key.startsWith(keys.hosts())) {
      const host = kv.key.slice(keys.hosts().length);
      this.hosts.set(host, decode<HostRecord>(kv));
      return this.lnetsOfHost(host);
    }
    if (kv.key.startsWith(keys.networks())) {
      const rec = decode<NetworkRecord>(kv);
      this.networks.set(rec.lnet, rec);
      return [rec.lnet];
    }
    return [];
  }

  private applyDelete(key: string): string[] {
    const { keys } = this.deps;
    if (key.startsWith(keys.endpoints())) {
      const [lnet, id] = key.slice(keys.endpoints().length).split('/');
      this.endpoints.get(lnet)?.delete(id);
      return [lnet];
    }
    if (key.startsWith(keys.hosts())) {
      const host = key.slice(keys.hosts().length);
      this.hosts.delete(host);
      return this.lnetsOfHost(host);
    }
    if (key.startsWith(keys.networks())) {
      this.networks.delete(key.slice(keys.networks().length));
    }
    return [];
  }

  private lnetsOfHost(host: string): string[] {
    return [...this.endpoints].filter(([, m]) => [...m.values()].some((c) => c.rec.host === host)).map(([lnet]) => lnet);
  }

  /**
   * The network now has a VXLAN device here: program it, and keep it programmed. Every Join
   * calls this; only the first (per device lifetime) reads the store and diffs the kernel, the
   * watch keeps it current after that.
   */
  async activate(lnet: string, net: NetworkRecord): Promise<void> {
    if (this.active.has(lnet)) return;
    this.networks.set(lnet, net);
    this.active.add(lnet);
    // The store may have news this process has not seen through the watch yet.
    for (const kv of await this.deps.store.list(this.deps.keys.endpoints(lnet))) this.applyPut(kv);
    await this.syncNetwork(lnet);
  }

  deactivate(lnet: string): void {
    this.active.delete(lnet);
    this.programmedPeers.delete(lnet);
  }

  /** Entries the active networks have on this host, as of their last diff. */
  programmed(): ProgrammedPeers[] {
    return [...this.programmedPeers.values()];
  }

  /** Runs one diff at a time per network; events that arrive meanwhile trigger one more. */
  syncNetwork(lnet: string): Promise<void> {
    const running = this.running.get(lnet);
    if (running) {
      this.dirty.add(lnet);
      return running;
    }
    const run = (async () => {
      do {
        this.dirty.delete(lnet);
        await this.diffNetwork(lnet);
      } while (this.dirty.has(lnet) && !this.closed);
    })().finally(() => this.running.delete(lnet));
    this.running.set(lnet, run);
    return run;
  }

  private async diffNetwork(lnet: string): Promise<void> {
    const net = this.networks.get(lnet);
    if (!net || !this.active.has(lnet) || this.closed) return;
    const { dataplane, log } = this.deps;
    const dev = vxlanName(net.vni);
    const started = process.hrtime.bigint();
    const want = wantedPeers([...(this.endpoints.get(lnet)?.values() ?? [])], this.hosts, this.deps.host);
    let fdbHave: Array<{ mac: string; dst: string | null; self: boolean; master: boolean }>;
    let neighHave: Array<{ ip: string; mac: string; permanent: boolean }>;
    try {
      fdbHave = (await dataplane.listFdb(dev)).filter((e) => e.self && !e.master && e.dst !== null);
      neighHave = await dataplane.listNeigh(dev);
    } catch (err) {
      log.warn({ err, lnet, dev }, 'cannot read peer entries');
      return;
    }
    const fdbKey = (e: { mac: string; dst: string | null }): string => `${e.mac}/${e.dst}`;
    const wantFdb = new Set(want.fdb.map(fdbKey));
    const wantNeigh = new Map(want.neigh.map((n) => [n.ip, n.mac]));
    const haveFdb = new Set(fdbHave.map(fdbKey));
    const haveNeigh = new Map(neighHave.map((n) => [n.ip, n.mac]));
    const wantedUnicast = new Set(want.fdb.filter((w) => w.mac !== ZERO_MAC).map((w) => w.mac));
    let changes = 0;
    const attempt = async (what: string, fn: () => Promise<void>): Promise<boolean> => {
      try {
        await fn();
        changes++;
        return true;
      } catch (err) {
        log.warn({ err, lnet, dev, what }, 'peer entry change failed');
        return false;
      }
    };
    for (const ip of haveNeigh.keys()) {
      // An IP whose MAC changed is replaced in place by ensureNeigh below.
      if (!wantNeigh.has(ip)) await attempt(`neigh del ${ip}`, () => dataplane.removeNeigh({ dev, ip }));
    }
    for (const e of fdbHave) {
      // A unicast entry whose VTEP changed is replaced in place by ensureFdb below.
      const moved = wantedUnicast.has(e.mac);
      if (!wantFdb.has(fdbKey(e)) && !moved) {
        await attempt(`fdb del ${e.mac} ${e.dst}`, () => dataplane.removeFdb({ dev, mac: e.mac, dst: e.dst ?? undefined }));
      }
    }
    // Counted as programmed: wanted entries that were there or were added now.
    const programmed = { fdb: 0, neigh: 0, vteps: 0 };
    for (const f of want.fdb) {
      if (haveFdb.has(fdbKey(f)) || (await attempt(`fdb add ${f.mac} ${f.dst}`, () => dataplane.ensureFdb({ dev, mac: f.mac, dst: f.dst })))) {
        programmed.fdb++;
        if (f.mac === ZERO_MAC) programmed.vteps++;
      }
    }
    for (const [ip, mac] of wantNeigh) {
      if (haveNeigh.get(ip) === mac || (await attempt(`neigh add ${ip}`, () => dataplane.ensureNeigh({ dev, ip, mac })))) programmed.neigh++;
    }
    // A network deactivated while this diff ran must not come back into the picture.
    if (this.active.has(lnet)) this.programmedPeers.set(lnet, { lnet, vni: net.vni, ...programmed });
    if (changes > 0) {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      log.info({ lnet, dev, changes, ms: Math.round(ms * 100) / 100, peers: want.fdb.length }, 'peer entries synced');
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.watchers) w.close();
    this.watchers = [];
    await Promise.all([...this.running.values()]);
  }
}
