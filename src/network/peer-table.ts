// The endpoints of one logical network and the VXLAN-device entries they call for on this host,
// kept up to date one record at a time (pure: no store, no kernel; unit-tested against
// wantedPeers, the same rules computed from scratch).
//
// Why incremental: peers.ts used to recompute the wanted entries of a network from every one of
// its endpoints, and dump the device's FDB and neighbour tables, on every change. With 10,000
// endpoints each new record cost a sort of 10,000 claims and two netlink dumps of ~7,000
// entries (~0.7 s of CPU and tens of MB of garbage per pass, 250 MB RSS per driver). A record
// can only change who wins the claims it shares (its IPs and MAC, old and new), so only those
// endpoints are looked at again, and only the entries they touch are handed to the kernel.
//
// Rules (as wantedPeers): an endpoint is stale when another record claiming one of its IPs or
// its MAC is newer (higher store revision; the lower ID on a tie); every record counts as a
// claimant, also local, dead or stale ones. A remote endpoint that is not stale, whose host is
// alive and that has a VTEP is a winner: one FDB entry MAC -> VTEP, one neighbour IP -> MAC per
// IP, and its VTEP keeps one all-zero (broadcast) FDB entry. Winners never share a MAC or an IP,
// so the entries are plain maps.
import type { EndpointRecord } from './records';

/** What the rules read of an endpoint record. */
export type PeerRecord = Pick<EndpointRecord, 'host' | 'vtep' | 'mac' | 'ipv4' | 'ipv6'>;

export interface Claim {
  id: string;
  rec: PeerRecord;
  rev: number;
}

/**
 * Keys whose wanted entry may have changed since the last takeChanges(), each with the value it
 * had then (undefined / false: no entry). peers.ts keeps no copy of what a device holds: after a
 * pass without a failure the device holds what the table wanted at the last takeChanges(), so
 * these old values are the device's entries for the keys that changed. A copy of each device's
 * tables cost two Map entries and their strings per remote endpoint (~200 bytes; bench:memory).
 */
export interface PeerChanges {
  /** unicast FDB entries, by MAC: the VTEP wanted before */
  macs: Map<string, string | undefined>;
  /** neighbour entries, by IP: the MAC wanted before */
  ips: Map<string, string | undefined>;
  /** all-zero FDB entries, by VTEP: whether one was wanted before */
  vteps: Map<string, boolean>;
}

/** A claim as the table holds it: whether it won at the last settle(). */
interface Held extends Claim {
  won: boolean;
}

export function claimIps(rec: PeerRecord): string[] {
  return [rec.ipv4, rec.ipv6].filter((a): a is string => !!a).map((a) => a.split('/')[0]);
}

/** true when claim a comes before b (newer, or the same revision and the lower ID). */
export function newerClaim(a: Claim, b: Claim): boolean {
  return a.rev > b.rev || (a.rev === b.rev && a.id < b.id);
}

/**
 * The claimants of one MAC or IP: almost always one, kept as its ID; a Set only while several
 * records claim it. A Set per MAC and per IP cost ~300 bytes per endpoint (heap snapshot with
 * 10,000 endpoints, bench:memory).
 */
type Claimants = string | Set<string>;

function addTo(index: Map<string, Claimants>, key: string, id: string): void {
  const s = index.get(key);
  if (s === undefined) index.set(key, id);
  else if (typeof s === 'string') {
    if (s !== id) index.set(key, new Set([s, id]));
  } else s.add(id);
}

function removeFrom(index: Map<string, Claimants>, key: string, id: string): void {
  const s = index.get(key);
  if (s === undefined) return;
  if (typeof s === 'string') {
    if (s === id) index.delete(key);
    return;
  }
  s.delete(id);
  if (s.size === 1) index.set(key, s.values().next().value as string);
  else if (s.size === 0) index.delete(key);
}

function claimantsOf(index: Map<string, Claimants>, key: string): Iterable<string> {
  const s = index.get(key);
  return s === undefined ? [] : typeof s === 'string' ? [s] : s;
}

function noChanges(): PeerChanges {
  return { macs: new Map(), ips: new Map(), vteps: new Map() };
}

/**
 * What the remote winners want on the device. Made with the first winner and dropped with the
 * last: a network whose endpoints are all on this host (most networks on most hosts) has none,
 * and its empty maps were ~1.2 KB per network (bench:memory --networks, heap snapshot). What a
 * winner puts in them follows from its record (its `won` flag says it does): a map of each
 * winner's contribution cost ~150 bytes per remote endpoint.
 */
interface Wanted {
  /** Unicast FDB entries: MAC -> VTEP. */
  fdb: Map<string, string>;
  /** Neighbour entries: IP -> MAC. */
  neigh: Map<string, string>;
  /** All-zero FDB entries: VTEP -> winners behind it. */
  vtepUsers: Map<string, number>;
}

const NOTHING: ReadonlyMap<string, string> = new Map();

export class PeerTable {
  private readonly claims = new Map<string, Held>();
  private readonly byMac = new Map<string, Claimants>();
  private readonly byIp = new Map<string, Claimants>();
  private wanted: Wanted | null = null;
  /** Claims to look at again in the next settle(); null when none (a Set kept empty costs its table). */
  private pending: Set<string> | null = null;
  /** Winners replaced or deleted since the last settle(): their entries go then. */
  private retired: Held[] = [];
  /**
   * Made on the first entry that changes after takeChanges(): a network whose endpoints are all
   * local (most networks on most hosts) never has one, and it kept three empty Sets per network
   * (bench:memory --networks, heap snapshot).
   */
  private changes: PeerChanges | null = null;

  constructor(private readonly me: string) {}

  get size(): number {
    return this.claims.size;
  }

  get(id: string): Claim | undefined {
    return this.claims.get(id);
  }

  /** Wanted unicast FDB entries: MAC -> VTEP. */
  get fdb(): ReadonlyMap<string, string> {
    return this.wanted?.fdb ?? NOTHING;
  }

  /** Wanted neighbour entries: IP -> MAC. */
  get neigh(): ReadonlyMap<string, string> {
    return this.wanted?.neigh ?? NOTHING;
  }

  /** Remote VTEPs that want an all-zero entry. */
  vteps(): string[] {
    return this.wanted ? [...this.wanted.vtepUsers.keys()] : [];
  }

  /** A record was written (a newer revision than the one held, or the caller would not ask). */
  put(c: Claim): void {
    const old = this.claims.get(c.id);
    if (old) this.unindex(old);
    // Only the fields the rules read: the record's Docker network ID, time and policy options
    // would be kept once per remote endpoint for nothing.
    const { host, vtep, mac, ipv4, ipv6 } = c.rec;
    const held: Held = { id: c.id, rec: { host, vtep, mac, ipv4, ipv6 }, rev: c.rev, won: false };
    this.claims.set(c.id, held);
    this.index(held);
  }

  delete(id: string): void {
    const old = this.claims.get(id);
    if (!old) return;
    this.unindex(old);
    this.claims.delete(id);
    this.touch(id);
  }

  /** A host came or went: its endpoints may win or lose. True when the table has any. */
  hostChanged(host: string): boolean {
    let any = false;
    for (const c of this.claims.values()) {
      if (c.rec.host !== host) continue;
      this.touch(c.id);
      any = true;
    }
    return any;
  }

  /** Every claim again (after a full reload). */
  touchAll(): void {
    for (const id of this.claims.keys()) this.touch(id);
  }

  private touch(id: string): void {
    (this.pending ??= new Set()).add(id);
  }

  /**
   * Re-evaluates the claims touched since the last call; the wanted maps are current after it
   * (and change nowhere else, so a pass reading them between two settles sees one state).
   */
  settle(alive: (host: string) => boolean): void {
    const pending = this.pending;
    const retired = this.retired;
    if (!pending && retired.length === 0) return;
    this.pending = null;
    this.retired = [];
    const wins = new Map<string, boolean>();
    for (const id of pending ?? []) wins.set(id, this.evaluate(id, alive));
    // Every claim whose outcome can change is in `wins` or `retired`: take all old entries out
    // before putting new ones in, so a MAC or IP passing from one winner to another is never lost.
    for (const old of retired) this.withdraw(old);
    for (const id of wins.keys()) {
      const c = this.claims.get(id);
      if (c?.won) {
        this.withdraw(c);
        c.won = false;
      }
    }
    for (const [id, won] of wins) {
      const c = this.claims.get(id);
      if (!won || !c) continue;
      const w = (this.wanted ??= { fdb: new Map(), neigh: new Map(), vtepUsers: new Map() });
      const dst = c.rec.vtep as string;
      this.noteMac(c.rec.mac);
      w.fdb.set(c.rec.mac, dst);
      for (const ip of claimIps(c.rec)) {
        this.noteIp(ip);
        w.neigh.set(ip, c.rec.mac);
      }
      this.noteVtep(dst);
      w.vtepUsers.set(dst, (w.vtepUsers.get(dst) ?? 0) + 1);
      c.won = true;
    }
    if (this.wanted?.fdb.size === 0) this.wanted = null;
  }

  /** Takes a winner's entries out of the wanted maps. */
  private withdraw(c: Held): void {
    const w = this.wanted;
    if (!w) return;
    const dst = c.rec.vtep as string;
    this.noteMac(c.rec.mac);
    w.fdb.delete(c.rec.mac);
    for (const ip of claimIps(c.rec)) {
      this.noteIp(ip);
      w.neigh.delete(ip);
    }
    this.noteVtep(dst);
    const users = (w.vtepUsers.get(dst) ?? 1) - 1;
    if (users === 0) w.vtepUsers.delete(dst);
    else w.vtepUsers.set(dst, users);
  }

  // The first change of a key since takeChanges() records what was wanted before it.
  private noteMac(mac: string): void {
    const m = this.changesToFill().macs;
    if (!m.has(mac)) m.set(mac, this.wanted?.fdb.get(mac));
  }

  private noteIp(ip: string): void {
    const m = this.changesToFill().ips;
    if (!m.has(ip)) m.set(ip, this.wanted?.neigh.get(ip));
  }

  private noteVtep(vtep: string): void {
    const m = this.changesToFill().vteps;
    if (!m.has(vtep)) m.set(vtep, this.wanted?.vtepUsers.has(vtep) ?? false);
  }

  private changesToFill(): PeerChanges {
    return (this.changes ??= noChanges());
  }

  /** Keys touched since the last call (then forgotten). */
  takeChanges(): PeerChanges {
    const c = this.changes ?? noChanges();
    this.changes = null;
    return c;
  }

  /** Whether the claim wins: remote, with a VTEP on a live host, beaten by no other claimant. */
  private evaluate(id: string, alive: (host: string) => boolean): boolean {
    const c = this.claims.get(id);
    if (!c || c.rec.host === this.me || !c.rec.vtep || !alive(c.rec.host)) return false;
    const beaten = (others: Iterable<string>): boolean => {
      for (const o of others) if (o !== id && newerClaim(this.claims.get(o) as Claim, c)) return true;
      return false;
    };
    return !beaten(claimantsOf(this.byMac, c.rec.mac)) && !claimIps(c.rec).some((ip) => beaten(claimantsOf(this.byIp, ip)));
  }

  /** Adds c to the indexes; it and every claim sharing its MAC or an IP are looked at again. */
  private index(c: Claim): void {
    this.touchSharers(c);
    addTo(this.byMac, c.rec.mac, c.id);
    for (const ip of claimIps(c.rec)) addTo(this.byIp, ip, c.id);
  }

  private unindex(c: Held): void {
    if (c.won) this.retired.push(c);
    removeFrom(this.byMac, c.rec.mac, c.id);
    for (const ip of claimIps(c.rec)) removeFrom(this.byIp, ip, c.id);
    this.touchSharers(c);
  }

  private touchSharers(c: Claim): void {
    this.touch(c.id);
    for (const o of claimantsOf(this.byMac, c.rec.mac)) this.touch(o);
    for (const ip of claimIps(c.rec)) for (const o of claimantsOf(this.byIp, ip)) this.touch(o);
  }
}
