import { NameTable } from '../../../src/names/table';
import type { NameRecord } from '../../../src/names/records';

function rec(host: string, names: string[], ipv4: string | null, ipv6: string | null = null, containerId = `c-${names[0]}-${host}`): NameRecord {
  return { host, containerId, network: 'appnet', names, ipv4, ipv6 };
}

function tableWith(entries: Array<[string, string, NameRecord]>): NameTable {
  const t = new NameTable('h1');
  for (const [lnet, ep, r] of entries) {
    t.putName(lnet, ep, r);
    t.putEndpoint(lnet, ep, { host: r.host, ipv4: r.ipv4 ? `${r.ipv4}/24` : null, ipv6: r.ipv6 ? `${r.ipv6}/64` : null });
  }
  return t;
}

describe('src/names/table', () => {
  it('answers a name, an alias and NAME.NETWORK, case-insensitively, with a trailing dot', () => {
    const t = tableWith([['L1', 'e1', rec('h1', ['web', 'frontend'], '10.0.0.2')]]);
    for (const q of ['web', 'WEB.', 'frontend', 'web.appnet', 'Frontend.AppNet.']) expect(t.lookup('L1', q, 4)).toEqual({ known: true, addresses: ['10.0.0.2'] });
    expect(t.lookup('L1', 'db', 4)).toEqual({ known: false, addresses: [] });
  });

  it('answers only names of the asked network', () => {
    const t = tableWith([['L1', 'e1', rec('h1', ['web'], '10.0.0.2')], ['L2', 'e2', rec('h2', ['db'], '10.0.1.2')]]);
    expect(t.lookup('L2', 'web', 4).known).toBe(false);
    expect(t.lookup('L1', 'db', 4).known).toBe(false);
    expect(t.lookup('L2', 'db', 4).addresses).toEqual(['10.0.1.2']);
  });

  it('gives AAAA addresses on dual stack, and a known name without IPv6 has no AAAA', () => {
    const t = tableWith([['L1', 'e1', rec('h1', ['web'], '10.0.0.2', 'fd00::2')], ['L1', 'e2', rec('h2', ['v4only'], '10.0.0.3')]]);
    expect(t.lookup('L1', 'web', 6)).toEqual({ known: true, addresses: ['fd00::2'] });
    expect(t.lookup('L1', 'v4only', 6)).toEqual({ known: true, addresses: [] });
  });

  it('rotates the order of a shared alias on every lookup (round robin)', () => {
    const t = tableWith([
      ['L1', 'e1', rec('h1', ['api'], '10.0.0.2')],
      ['L1', 'e2', rec('h2', ['api'], '10.0.0.3')],
      ['L1', 'e3', rec('h3', ['api'], '10.0.0.4')],
    ]);
    const firsts = [0, 1, 2, 3].map(() => t.lookup('L1', 'api', 4).addresses);
    expect(firsts[0]).toEqual(['10.0.0.2', '10.0.0.3', '10.0.0.4']);
    expect(firsts[1]).toEqual(['10.0.0.3', '10.0.0.4', '10.0.0.2']);
    expect(firsts[2]).toEqual(['10.0.0.4', '10.0.0.2', '10.0.0.3']);
    expect(firsts[3]).toEqual(firsts[0]);
  });

  it('forgets a name whose endpoint record is gone (dead host, crash leftovers)', () => {
    const t = tableWith([['L1', 'e1', rec('h1', ['web'], '10.0.0.2')]]);
    t.deleteEndpoint('L1', 'e1');
    expect(t.lookup('L1', 'web', 4).known).toBe(false);
  });

  it('maps a local container address to its network, never another host\'s', () => {
    const t = tableWith([['L1', 'e1', rec('h1', ['web'], '10.0.0.2')], ['L2', 'e2', rec('h2', ['db'], '10.0.1.2')]]);
    expect(t.networkOf('10.0.0.2')).toBe('L1');
    expect(t.networkOf('::ffff:10.0.0.2')).toBe('L1');
    expect(t.networkOf('10.0.1.2')).toBeNull();
    expect(t.networkOf('192.0.2.1')).toBeNull();
  });

  it('follows an endpoint that moved or went: an address index, kept in step with puts and deletes', () => {
    const t = tableWith([['L1', 'e1', rec('h1', ['web'], '10.0.0.2')]]);
    // The endpoint record rewritten with another address (and host): the old address no longer maps.
    t.putEndpoint('L1', 'e1', { host: 'h1', ipv4: '10.0.0.9/24', ipv6: 'fd00::9/64' });
    expect(t.networkOf('10.0.0.2')).toBeNull();
    expect(t.networkOf('10.0.0.9')).toBe('L1');
    expect(t.networkOf('fd00::9')).toBe('L1');
    // The same address on another network of this host (the first one released it meanwhile).
    t.putEndpoint('L2', 'e7', { host: 'h1', ipv4: '10.0.0.9', ipv6: null });
    t.deleteEndpoint('L1', 'e1');
    expect(t.networkOf('10.0.0.9')).toBe('L2');
    t.deleteEndpoint('L2', 'e7');
    expect(t.networkOf('10.0.0.9')).toBeNull();
    t.putEndpoint('L2', 'e7', { host: 'h1', ipv4: '10.0.0.9', ipv6: null });
    t.clear();
    expect(t.networkOf('10.0.0.9')).toBeNull();
  });

  it('keeps only the existence of another host\'s endpoint: its names answer, its address maps to no network', () => {
    const t = tableWith([['L1', 'e2', rec('h2', ['db'], '10.0.0.3')]]);
    expect(t.lookup('L1', 'db', 4).addresses).toEqual(['10.0.0.3']);
    expect(t.networkOf('10.0.0.3')).toBeNull();
    // Its record rewritten: nothing a query sees changed, so the encoded answers stay valid.
    const before = t.version;
    t.putRemoteEndpoint('L1', 'e2');
    t.putEndpoint('L1', 'e2', { host: 'h2', ipv4: '10.0.0.3/24', ipv6: null });
    expect(t.version).toBe(before);
    t.deleteEndpoint('L1', 'e2');
    expect(t.version).toBeGreaterThan(before);
    expect(t.lookup('L1', 'db', 4).known).toBe(false);
    // Back under this host (a record written by h1): indexed by address again.
    t.putEndpoint('L1', 'e2', { host: 'h1', ipv4: '10.0.0.3/24', ipv6: null });
    expect(t.networkOf('10.0.0.3')).toBe('L1');
    t.putRemoteEndpoint('L1', 'e2');
    expect(t.networkOf('10.0.0.3')).toBeNull();
    expect(t.lookup('L1', 'db', 4).known).toBe(true);
  });

  it('lists what a host serves and what one container owns', () => {
    const t = tableWith([['L1', 'e1', rec('h1', ['web'], '10.0.0.2', null, 'c1')], ['L1', 'e2', rec('h2', ['db'], '10.0.0.3', null, 'c2')]]);
    expect(t.servedBy('h1').map((s) => s.names)).toEqual([['web']]);
    expect(t.recordsOf('h1', 'c1')).toEqual([['L1', 'e1']]);
    expect(t.recordsOf('h1', 'c2')).toEqual([]);
  });

  it('scopes a query to every vxnet network of the asking container on this host, its own network first', () => {
    // Container "multi" of h1 is on L2 and L1; "solo" of h1 on L1 only; "far" of h2 on L3.
    const t = tableWith([
      ['L2', 'm2', rec('h1', ['multi'], '10.0.2.2', null, 'multi')],
      ['L1', 'm1', rec('h1', ['multi'], '10.0.0.2', null, 'multi')],
      ['L1', 's1', rec('h1', ['solo'], '10.0.0.3', null, 'solo')],
      ['L3', 'f3', rec('h2', ['far'], '10.0.3.2', null, 'multi')],
    ]);
    expect(t.scopeOf('10.0.0.2')).toEqual({ lnets: ['L1', 'L2'], key: 'L1,L2' });
    expect(t.scopeOf('10.0.2.2')).toEqual({ lnets: ['L2', 'L1'], key: 'L2,L1' });
    expect(t.scopeOf('10.0.0.3')).toEqual({ lnets: ['L1'], key: 'L1' });
    expect(t.scopeOf('192.0.2.1')).toBeNull();
    // Another host's record with the same container ID widens nothing (IDs are per dockerd).
    expect(t.scopeOf('10.0.3.2')).toBeNull();
    expect(t.networkKnowing(['L1', 'L2'], 'multi')).toBe('L1');
    expect(t.networkKnowing(['L1'], 'far')).toBeNull();
    // The container leaves L2: its queries resolve on L1 only again.
    t.deleteName('L2', 'm2');
    expect(t.scopeOf('10.0.0.2')).toEqual({ lnets: ['L1'], key: 'L1' });
  });
});
