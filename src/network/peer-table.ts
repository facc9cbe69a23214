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

export interface Claim {
  id: string;
  rec: EndpointRecord;
  rev: number;
}

/** Keys whose wanted entry may have changed since the last takeChanges(). */
export interface PeerChanges {
  /** unicast FDB entries, by MAC */
  macs: Set<string>;
  /** neighbour entries, by IP */
  ips: Set<string>;
  /** all-zero FDB entries, by VTEP */
  vteps: Set<string>;
}

interface Contribution {
  mac: string;
  dst: string;
  ips: string[];
}

export function claimIps(rec: EndpointRecord): string[] {
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
  return { macs: new Set(), ips: new Set(), vteps: new Set() };
}

/**
 * What the remote winners want on the device. Made with the first winner and dropped with the
 * last: a network whose endpoints are all on this host (most networks on most hosts) has none,
 * and its four empty maps were ~1.2 KB per network (bench:memory --networks, heap snapshot).
 */
interface Wanted {
  /** What each winner puts in the maps below. */
  contrib: Map<string, Contribution>;
  /** Unicast FDB entries: MAC -> VTEP. */
  fdb: Map<string, string>;
  /** Neighbour entries: IP -> MAC. */
  neigh: Map<string, string>;
  /** All-zero FDB entries: VTEP -> winners behind it. */
  vtepUsers: Map<string, number>;
}

const NOTHING: ReadonlyMap<string, string> = new Map();

export class PeerTable {
  private readonly claims = new Map<string, Claim>();
  private readonly byMac = new Map<string, Claimants>();
  private readonly byIp = new Map<string, Claimants>();
  private wanted: Wanted | null = null;
  /** Claims to look at again in the next settle(); null when none (a Set kept empty costs its table). */
  private pending: Set<string> | null = null;
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
    this.claims.set(c.id, c);
    this.index(c);
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

  /** Re-evaluates the claims touched since the last call; the wanted maps are current after it. */
  settle(alive: (host: string) => boolean): void {
    const pending = this.pending;
    if (!pending) return;
    this.pending = null;
    const next = new Map<string, Contribution | null>();
    for (const id of pending) next.set(id, this.evaluate(id, alive));
    // Every claim whose outcome can change is in `next`: take all old entries out before
    // putting new ones in, so a MAC or IP passing from one winner to another is never lost.
    const had = this.wanted;
    if (had) {
      for (const id of next.keys()) {
        const old = had.contrib.get(id);
        if (!old) continue;
        const changes = this.changesToFill();
        had.contrib.delete(id);
        had.fdb.delete(old.mac);
        changes.macs.add(old.mac);
        for (const ip of old.ips) {
          had.neigh.delete(ip);
          changes.ips.add(ip);
        }
        const users = (had.vtepUsers.get(old.dst) ?? 1) - 1;
        if (users === 0) had.vtepUsers.delete(old.dst);
        else had.vtepUsers.set(old.dst, users);
        changes.vteps.add(old.dst);
      }
    }
    for (const [id, c] of next) {
      if (!c) continue;
      const changes = this.changesToFill();
      const w = (this.wanted ??= { contrib: new Map(), fdb: new Map(), neigh: new Map(), vtepUsers: new Map() });
      w.contrib.set(id, c);
      w.fdb.set(c.mac, c.dst);
      changes.macs.add(c.mac);
      for (const ip of c.ips) {
        w.neigh.set(ip, c.mac);
        changes.ips.add(ip);
      }
      w.vtepUsers.set(c.dst, (w.vtepUsers.get(c.dst) ?? 0) + 1);
      changes.vteps.add(c.dst);
    }
    if (this.wanted?.contrib.size === 0) this.wanted = null;
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

  private evaluate(id: string, alive: (host: string) => boolean): Contribution | null {
    const c = this.claims.get(id);
    if (!c || c.rec.host === this.me || !c.rec.vtep || !alive(c.rec.host)) return null;
    const ips = claimIps(c.rec);
    const beaten = (others: Iterable<string>): boolean => {
      for (const o of others) if (o !== id && newerClaim(this.claims.get(o) as Claim, c)) return true;
      return false;
    };
    if (beaten(claimantsOf(this.byMac, c.rec.mac)) || ips.some((ip) => beaten(claimantsOf(this.byIp, ip)))) return null;
    return { mac: c.rec.mac, dst: c.rec.vtep, ips };
  }

  /** Adds c to the indexes; it and every claim sharing its MAC or an IP are looked at again. */
  private index(c: Claim): void {
    this.touchSharers(c);
    addTo(this.byMac, c.rec.mac, c.id);
    for (const ip of claimIps(c.rec)) addTo(this.byIp, ip, c.id);
  }

  private unindex(c: Claim): void {
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
