import { wantedPeers, ZERO_MAC, HostRecord } from '../../../src/network/peers';
import type { EndpointRecord } from '../../../src/network/records';

function ep(id: string, host: string, ip: string, mac: string, rev: number, vtep: string | null = `172.31.0.${host.slice(1)}`): { id: string; rec: EndpointRecord; rev: number } {
  return { id, rev, rec: { networkId: 'n', host, vtep, mac, ipv4: `${ip}/24`, ipv6: null } };
}
const alive = (...hosts: string[]): Map<string, HostRecord> => new Map(hosts.map((h) => [h, { vtep: `172.31.0.${h.slice(1)}`, version: 't' }]));

describe('src/network/peers.ts wantedPeers', () => {
  it('wants one FDB and one neighbour entry per remote endpoint, one all-zero entry per remote VTEP', () => {
    const w = wantedPeers([ep('a', 'h1', '10.0.0.2', '02:42:0a:00:00:02', 5), ep('b', 'h2', '10.0.0.3', '02:42:0a:00:00:03', 6), ep('c', 'h2', '10.0.0.4', '02:42:0a:00:00:04', 7)], alive('h1', 'h2'), 'h1');
    expect(w.fdb).toEqual(
      expect.arrayContaining([
        { mac: '02:42:0a:00:00:03', dst: '172.31.0.2' },
        { mac: '02:42:0a:00:00:04', dst: '172.31.0.2' },
        { mac: ZERO_MAC, dst: '172.31.0.2' },
      ]),
    );
    expect(w.fdb).toHaveLength(3);
    expect(w.neigh).toEqual([
      { ip: '10.0.0.4', mac: '02:42:0a:00:00:04' },
      { ip: '10.0.0.3', mac: '02:42:0a:00:00:03' },
    ]);
  });

  it('skips endpoints of hosts whose lease is gone', () => {
    const w = wantedPeers([ep('b', 'h2', '10.0.0.3', '02:42:0a:00:00:03', 6)], alive('h1'), 'h1');
    expect(w).toEqual({ fdb: [], neigh: [] });
  });

  it('lets the newest claim of an IP win, and never programs a local endpoint as remote', () => {
    // 10.0.0.3 moved from h2 (older record) to h3 (newer): only h3's is programmed.
    const moved = wantedPeers([ep('old', 'h2', '10.0.0.3', '02:42:0a:00:00:03', 6), ep('new', 'h3', '10.0.0.3', '02:42:0a:00:00:03', 9)], alive('h1', 'h2', 'h3'), 'h1');
    expect(moved.fdb).toEqual([{ mac: '02:42:0a:00:00:03', dst: '172.31.0.3' }, { mac: ZERO_MAC, dst: '172.31.0.3' }]);
    // It moved to this host: the stale remote record must not be programmed here.
    const local = wantedPeers([ep('old', 'h2', '10.0.0.3', '02:42:0a:00:00:03', 6), ep('new', 'h1', '10.0.0.3', '02:42:0a:00:00:03', 9)], alive('h1', 'h2'), 'h1');
    expect(local).toEqual({ fdb: [], neigh: [] });
  });
});
