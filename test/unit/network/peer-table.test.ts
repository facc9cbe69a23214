// PeerTable keeps the wanted VXLAN-device entries one record at a time; wantedPeers computes them
// from scratch. After any sequence of puts, deletes and host changes both must agree, and the
// changes reported must cover every entry that differs from before.
import { PeerTable, Claim } from '../../../src/network/peer-table';
import { wantedPeers, ZERO_MAC, HostRecord } from '../../../src/network/peers';
import type { EndpointRecord } from '../../../src/network/records';

const HOSTS = ['h1', 'h2', 'h3', 'h4'];
const allAlive = (): boolean => true;

function rec(host: string, ip: number, mac: number, vtep = true): EndpointRecord {
  return { networkId: 'n', host, vtep: vtep ? `172.31.0.${host.slice(1)}` : null, mac: `02:42:0a:00:00:${mac.toString(16).padStart(2, '0')}`, ipv4: `10.0.0.${ip}/24`, ipv6: null };
}

/** A small deterministic PRNG (mulberry32): the same sequence on every run. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Snapshot {
  fdb: Map<string, string>;
  neigh: Map<string, string>;
  vteps: Set<string>;
}

function fromScratch(claims: Map<string, Claim>, alive: Set<string>): Snapshot {
  const hosts = new Map<string, HostRecord>([...alive].map((h) => [h, { vtep: `172.31.0.${h.slice(1)}`, version: 't' }]));
  const w = wantedPeers([...claims.values()], hosts, 'h1');
  return {
    fdb: new Map(w.fdb.filter((f) => f.mac !== ZERO_MAC).map((f) => [f.mac, f.dst])),
    neigh: new Map(w.neigh.map((n) => [n.ip, n.mac])),
    vteps: new Set(w.fdb.filter((f) => f.mac === ZERO_MAC).map((f) => f.dst)),
  };
}

function ofTable(t: PeerTable): Snapshot {
  return { fdb: new Map(t.fdb), neigh: new Map(t.neigh), vteps: new Set(t.vteps()) };
}

describe('src/network/peer-table.ts PeerTable', () => {
  it('wants what wantedPeers wants after every step of random puts, deletes and host changes, and reports every entry that changed', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const rnd = prng(seed);
      const pick = (n: number): number => Math.floor(rnd() * n);
      const table = new PeerTable('h1');
      const claims = new Map<string, Claim>();
      const alive = new Set(HOSTS);
      let rev = 1;
      let before = fromScratch(claims, alive);
      for (let step = 0; step < 300; step++) {
        const r = rnd();
        if (r < 0.55) {
          // Few IPs and MACs for many IDs: claims collide often (moved containers, stale records).
          const c: Claim = { id: `e${pick(25)}`, rec: rec(HOSTS[pick(4)], 2 + pick(12), 2 + pick(12), rnd() > 0.05), rev: rev++ };
          claims.set(c.id, c);
          table.put(c);
        } else if (r < 0.85) {
          const id = `e${pick(25)}`;
          claims.delete(id);
          table.delete(id);
        } else {
          const h = HOSTS[1 + pick(3)];
          if (alive.has(h)) alive.delete(h);
          else alive.add(h);
          table.hostChanged(h);
        }
        table.settle((h) => alive.has(h));
        const after = fromScratch(claims, alive);
        expect(ofTable(table)).toEqual(after);
        const changed = table.takeChanges();
        for (const mac of new Set([...before.fdb.keys(), ...after.fdb.keys()])) if (before.fdb.get(mac) !== after.fdb.get(mac)) expect(changed.macs.has(mac)).toBe(true);
        for (const ip of new Set([...before.neigh.keys(), ...after.neigh.keys()])) if (before.neigh.get(ip) !== after.neigh.get(ip)) expect(changed.ips.has(ip)).toBe(true);
        for (const v of new Set([...before.vteps, ...after.vteps])) if (before.vteps.has(v) !== after.vteps.has(v)) expect(changed.vteps.has(v)).toBe(true);
        // Each changed key carries what was wanted before: peers.ts takes it for the device's entry.
        for (const [mac, dst] of changed.macs) expect([mac, dst]).toEqual([mac, before.fdb.get(mac)]);
        for (const [ip, mac] of changed.ips) expect([ip, mac]).toEqual([ip, before.neigh.get(ip)]);
        for (const [v, had] of changed.vteps) expect([v, had]).toEqual([v, before.vteps.has(v)]);
        before = after;
      }
    }
  });

  it('reports only the keys a record touches', () => {
    const table = new PeerTable('h1');
    for (let i = 2; i < 50; i++) table.put({ id: `e${i}`, rec: rec('h2', i, i), rev: i });
    table.settle(allAlive);
    table.takeChanges();
    table.put({ id: 'new', rec: rec('h3', 60, 60), rev: 100 });
    table.settle(allAlive);
    expect(table.takeChanges()).toEqual({ macs: new Map([['02:42:0a:00:00:3c', undefined]]), ips: new Map([['10.0.0.60', undefined]]), vteps: new Map([['172.31.0.3', false]]) });
  });

  it('hands an IP to the newer record and back to the older one when the newer goes away', () => {
    const table = new PeerTable('h1');
    table.put({ id: 'old', rec: rec('h2', 3, 3), rev: 5 });
    table.put({ id: 'new', rec: rec('h3', 3, 4), rev: 9 });
    table.settle(allAlive);
    expect([...table.neigh]).toEqual([['10.0.0.3', '02:42:0a:00:00:04']]);
    expect([...table.fdb]).toEqual([['02:42:0a:00:00:04', '172.31.0.3']]);
    table.delete('new');
    table.settle(allAlive);
    expect([...table.neigh]).toEqual([['10.0.0.3', '02:42:0a:00:00:03']]);
    expect([...table.fdb]).toEqual([['02:42:0a:00:00:03', '172.31.0.2']]);
    expect(table.vteps()).toEqual(['172.31.0.2']);
  });

  it('wants nothing for local endpoints, then the remote one\'s entries, then nothing again when it goes', () => {
    const table = new PeerTable('h1');
    table.put({ id: 'l1', rec: rec('h1', 2, 2), rev: 1 });
    table.put({ id: 'l2', rec: rec('h1', 3, 3), rev: 2 });
    table.settle(allAlive);
    expect([table.fdb.size, table.neigh.size, table.vteps()]).toEqual([0, 0, []]);
    expect(table.takeChanges()).toEqual({ macs: new Map(), ips: new Map(), vteps: new Map() });
    table.put({ id: 'r', rec: rec('h2', 4, 4), rev: 3 });
    table.settle(allAlive);
    expect([...table.fdb]).toEqual([['02:42:0a:00:00:04', '172.31.0.2']]);
    expect(table.takeChanges().macs).toEqual(new Map([['02:42:0a:00:00:04', undefined]]));
    table.delete('r');
    table.settle(allAlive);
    expect([table.fdb.size, table.neigh.size, table.vteps()]).toEqual([0, 0, []]);
    // With what was wanted before: the entries a device in step holds and must lose.
    expect(table.takeChanges()).toEqual({
      macs: new Map([['02:42:0a:00:00:04', '172.31.0.2']]),
      ips: new Map([['10.0.0.4', '02:42:0a:00:00:04']]),
      vteps: new Map([['172.31.0.2', true]]),
    });
    // And again after the table went back to holding nothing.
    table.put({ id: 'r2', rec: rec('h3', 5, 5), rev: 4 });
    table.settle(allAlive);
    expect([...table.neigh]).toEqual([['10.0.0.5', '02:42:0a:00:00:05']]);
    expect(table.vteps()).toEqual(['172.31.0.3']);
  });
});
