import { disjoint, resolvePolicy, PolicyInput, PolicyMemo, element } from '../../../src/policy/resolve';
import type { EndpointRecord, NetworkRecord } from '../../../src/network/records';
import { emptyPolicySets } from '../../../src/dataplane/policy-table';
import type { NameRecord } from '../../../src/names/records';

const NET: NetworkRecord = { lnet: 'n1', vni: 256, ipv4: { subnet: '10.5.0.0/24', gateway: '10.5.0.1', poolId: null }, ipv6: null, mtu: 1450, internal: false };

function ep(host: string, ip: string, extra: Partial<EndpointRecord> = {}): EndpointRecord {
  return { networkId: 'd1', host, vtep: null, mac: '02:00:00:00:00:01', ipv4: `${ip}/24`, ipv6: null, ...extra };
}

function name(host: string, ip: string, names: string[], labels: Record<string, string> = {}): NameRecord {
  return { host, containerId: `c-${names[0]}`, network: 'n1', names, ipv4: ip, ipv6: null, labels };
}

function input(over: Partial<PolicyInput> = {}): PolicyInput {
  return { host: 'h1', networks: new Map([['n1', NET]]), endpoints: new Map(), names: new Map(), pending: new Set(), ...over };
}

describe('resolvePolicy with a memo (the engine\'s recomputes)', () => {
  it('reuses a decision while its records are the same objects, and decides the same as without it', () => {
    const memo: PolicyMemo = new Map();
    const e1 = ep('h1', '10.5.0.2', { egress: '10.9.0.0/16:443' });
    const e2 = ep('h1', '10.5.0.3', { allow: 'api:80' }); // names a source: read again every time
    const names = new Map([['n1/e9', name('h2', '10.5.0.9', ['api'])]]);
    const at = (over: Partial<PolicyInput>) => input({ endpoints: new Map([['n1/e1', e1], ['n1/e2', e2]]), names, ...over });
    const first = resolvePolicy(at({}), memo);
    expect(first).toEqual(resolvePolicy(at({})));
    expect(memo.has('n1/e1')).toBe(true);
    expect(memo.has('n1/e2')).toBe(false);
    const again = resolvePolicy(at({}), memo);
    expect(again.endpoints[0]).toBe(first.endpoints[0]);
    // Another host's name appears: the rule naming it sees it though e2's own records are unchanged.
    names.set('n1/e8', name('h3', '10.5.0.20', ['api']));
    const more = resolvePolicy(at({}), memo);
    expect(more.elements.allowIn).toEqual(['10.5.0.3 . 10.5.0.9 . 6 . 80', '10.5.0.3 . 10.5.0.20 . 6 . 80']);
    expect(more).toEqual(resolvePolicy(at({})));
    // A replaced record, a changed network record and pending are each decided again.
    const isolatedNet = { ...NET, icc: false };
    const changed = at({ endpoints: new Map([['n1/e1', { ...e1, ipv4: '10.5.0.4/24' }], ['n1/e2', e2]]), networks: new Map([['n1', isolatedNet]]), pending: new Set(['n1/e2']) });
    expect(resolvePolicy(changed, memo)).toEqual(resolvePolicy(changed));
    // An endpoint gone is forgotten.
    resolvePolicy(input({ endpoints: new Map([['n1/e2', e2]]), names }), memo);
    expect(memo.has('n1/e1')).toBe(false);
  });
});

describe('resolvePolicy', () => {
  it('leaves a network without policy alone (default: allow)', () => {
    const plan = resolvePolicy(input({ endpoints: new Map([['n1/e1', ep('h1', '10.5.0.2')]]) }));
    expect(plan.elements).toEqual(emptyPolicySets());
  });

  it('polices only this host\'s endpoints, and resolves names on other hosts to their addresses', () => {
    const plan = resolvePolicy(
      input({
        endpoints: new Map([
          ['n1/e1', ep('h1', '10.5.0.2', { allow: 'web:80,api' })],
          ['n1/e2', ep('h2', '10.5.0.3', { allow: 'web' })],
        ]),
        names: new Map([
          ['n1/e3', name('h2', '10.5.0.7', ['web', 'front'])],
          ['n1/e4', name('h3', '10.5.0.9', ['api'])],
          ['n2/e5', name('h3', '10.6.0.9', ['web'])], // another network: not a source
        ]),
      }),
    );
    expect(plan.elements.policedIn).toEqual(['10.5.0.2']);
    expect(plan.elements.allowIn).toEqual(['10.5.0.2 . 10.5.0.7 . 6 . 80', '10.5.0.2 . 10.5.0.9 . 0-255 . 0-65535']);
  });

  it('closes an isolated network\'s endpoints except for what rules allow, and pending ones entirely', () => {
    const plan = resolvePolicy(
      input({
        networks: new Map([['n1', { ...NET, icc: false }]]),
        endpoints: new Map([
          ['n1/e1', ep('h1', '10.5.0.2')],
          ['n1/e2', ep('h1', '10.5.0.3', { allow: 'label:role=client:8080' })],
          ['n1/e3', ep('h1', '10.5.0.4', { allow: 'web' })],
        ]),
        names: new Map([['n1/e9', name('h2', '10.5.0.20', ['c9'], { role: 'client' })]]),
        pending: new Set(['n1/e3']),
      }),
    );
    expect(plan.elements.policedIn).toEqual(['10.5.0.2', '10.5.0.3', '10.5.0.4']);
    expect(plan.elements.allowIn).toEqual(['10.5.0.3 . 10.5.0.20 . 6 . 8080']);
    expect(plan.endpoints.map((e) => [e.endpointId, e.pending, e.isolatedNetwork])).toEqual([
      ['e1', false, true],
      ['e2', false, true],
      ['e3', true, true],
    ]);
  });

  it('applies the same rules to IPv6 with their IPv6 sources: CIDRs, and named peers\' IPv6 addresses; egress keeps the own subnet', () => {
    const net6 = { ...NET, ipv6: { subnet: 'fd00:5::/64', gateway: 'fd00:5::1', poolId: null } };
    const plan = resolvePolicy(
      input({
        networks: new Map([['n1', net6]]),
        endpoints: new Map([
          ['n1/e1', ep('h1', '10.5.0.2', { ipv6: 'fd00:5::2/64', allow: '10.5.0.0/24 [fd00:5::/120]:22 web:80', egress: '192.0.2.0/24 [2001:db8::/32]:443' })],
          ['n1/e2', ep('h1', '10.5.0.3', { ipv6: 'fd00:5::3/64' })],
        ]),
        names: new Map([['n1/e3', { ...name('h2', '10.5.0.4', ['web']), ipv6: 'fd00:5::4' }]]),
      }),
    );
    expect(plan.elements.policedIn6).toEqual(['fd00:5::2']);
    // [fd00:5::/120]:22 and web:80 (web's IPv6 address is inside the /120): cut into disjoint pieces.
    expect(plan.elements.allowIn6).toEqual([
      'fd00:5::2 . fd00:5::-fd00:5::3 . 6 . 22',
      'fd00:5::2 . fd00:5::4 . 6 . 22',
      'fd00:5::2 . fd00:5::4 . 6 . 80',
      'fd00:5::2 . fd00:5::5-fd00:5::ff . 6 . 22',
    ]);
    // The IPv4 side is unchanged by IPv6 sources.
    expect(plan.elements.allowIn).toEqual(['10.5.0.2 . 10.5.0.0-10.5.0.3 . 0-255 . 0-65535', '10.5.0.2 . 10.5.0.4 . 0-5 . 0-65535', '10.5.0.2 . 10.5.0.4 . 6 . 0-65535', '10.5.0.2 . 10.5.0.4 . 7-255 . 0-65535', '10.5.0.2 . 10.5.0.5-10.5.0.255 . 0-255 . 0-65535']);
    expect(plan.elements.policedOut6).toEqual(['fd00:5::2']);
    expect(plan.elements.allowOut6).toEqual(['fd00:5::2 . 2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff . 6 . 443', 'fd00:5::2 . fd00:5::-fd00:5::ffff:ffff:ffff:ffff . 0-255 . 0-65535']);
    expect(plan.endpoints[0].allow.map((a) => a.sources)).toEqual([['10.5.0.0/24'], ['fd00:5::/120'], ['10.5.0.4', 'fd00:5::4']]);
    // A container without rules on a non-isolated network is not policed, in either family.
    expect(plan.elements.policedIn6).not.toContain('fd00:5::3');
  });

  it('keeps a container with a bad label closed, and says why', () => {
    const plan = resolvePolicy(
      input({
        endpoints: new Map([['n1/e1', ep('h1', '10.5.0.2')]]),
        names: new Map([['n1/e1', name('h1', '10.5.0.2', ['db'], { 'vxnet.allow': 'web:70000' })]]),
      }),
    );
    expect(plan.elements.policedIn).toEqual(['10.5.0.2']);
    expect(plan.elements.allowIn).toEqual([]);
    expect(plan.elements.policedOut).toEqual(['10.5.0.2']);
    expect(plan.elements.allowOut).toEqual(['10.5.0.2 . 10.5.0.0-10.5.0.255 . 0-255 . 0-65535']);
    expect(plan.endpoints[0].error).toBe('label vxnet.allow: bad entry "web:70000": port 70000 is outside 1-65535');
  });

  it('merges option and label rules; egress always keeps the own network', () => {
    const plan = resolvePolicy(
      input({
        endpoints: new Map([['n1/e1', ep('h1', '10.5.0.2', { egress: '192.0.2.0/24:443' })]]),
        names: new Map([['n1/e1', name('h1', '10.5.0.2', ['app'], { 'vxnet.egress': '198.51.100.7:53/udp', 'vxnet.allow': '10.5.0.0/24:80' })]]),
      }),
    );
    expect(plan.elements.policedOut).toEqual(['10.5.0.2']);
    expect(plan.elements.allowOut).toEqual([
      '10.5.0.2 . 10.5.0.0-10.5.0.255 . 0-255 . 0-65535',
      '10.5.0.2 . 192.0.2.0-192.0.2.255 . 6 . 443',
      '10.5.0.2 . 198.51.100.7 . 17 . 53',
    ]);
    expect(plan.elements.allowIn).toEqual(['10.5.0.2 . 10.5.0.0-10.5.0.255 . 6 . 80']);
    expect(plan.endpoints[0].allow).toEqual([{ rule: '10.5.0.0/24:80', from: 'label', sources: ['10.5.0.0/24'] }]);
    expect(plan.endpoints[0].egress.map((e) => e.from)).toEqual(['option', 'label']);
  });
});

describe('disjoint (the kernel refuses overlapping interval elements)', () => {
  const big = ([lo, hi]: [number, number]): [bigint, bigint] => [BigInt(lo), BigInt(hi)];
  const b = (src: [number, number], proto: [number, number], port: [number, number]) => ({ src: big(src), proto: big(proto), port: big(port) });

  it('cuts overlapping boxes into pieces that cover the same space', () => {
    const boxes = [b([10, 20], [6, 6], [80, 90]), b([15, 15], [6, 6], [85, 100]), b([0, 255], [0, 255], [22, 22])];
    const out = disjoint(boxes);
    // No two pieces overlap…
    for (let i = 0; i < out.length; i++) {
      for (let j = i + 1; j < out.length; j++) {
        const o = (x: [bigint, bigint], y: [bigint, bigint]) => x[0] <= y[1] && y[0] <= x[1];
        expect(o(out[i].src, out[j].src) && o(out[i].proto, out[j].proto) && o(out[i].port, out[j].port)).toBe(false);
      }
    }
    // …and every point is covered exactly as before.
    const inside = (bs: typeof boxes, s: number, p: number, port: number) =>
      bs.some((x) => x.src[0] <= BigInt(s) && BigInt(s) <= x.src[1] && x.proto[0] <= BigInt(p) && BigInt(p) <= x.proto[1] && x.port[0] <= BigInt(port) && BigInt(port) <= x.port[1]);
    for (const s of [0, 9, 10, 14, 15, 16, 20, 21, 255]) {
      for (const p of [1, 6, 17]) {
        for (const port of [22, 79, 80, 85, 90, 91, 100, 101]) expect(inside(out, s, p, port)).toBe(inside(boxes, s, p, port));
      }
    }
  });

  it('joins neighbouring pieces with the same content', () => {
    expect(disjoint([b([1, 5], [6, 6], [80, 80]), b([6, 9], [6, 6], [80, 80]), b([3, 4], [6, 6], [80, 80])])).toEqual([b([1, 9], [6, 6], [80, 80])]);
  });

  it('prints elements in nft syntax', () => {
    expect(element('10.0.0.2', b([0x0a000000, 0x0a0000ff], [0, 255], [1, 1]))).toBe('10.0.0.2 . 10.0.0.0-10.0.0.255 . 0-255 . 1');
    expect(element('fd00::2', { src: [0xfd00n << 112n, (0xfd00n << 112n) + 0xffn], proto: [6n, 6n], port: [22n, 22n] })).toBe('fd00::2 . fd00::-fd00::ff . 6 . 22');
  });
});
