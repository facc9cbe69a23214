import * as dnsPacket from 'dns-packet';
import { AnswerCache, MAX_ENTRIES, parsePlainQuery } from '../../../src/names/answer-cache';
import { decide } from '../../../src/names/answer';
import { NameTable, oneNetwork } from '../../../src/names/table';

const LNET = 'L1';

function query(name: string, type: dnsPacket.RecordType, opts: { id?: number; flags?: number; edns?: number } = {}): Buffer {
  return dnsPacket.encode({
    id: opts.id ?? 4242,
    type: 'query',
    flags: opts.flags ?? dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type, class: 'IN' }],
    additionals: opts.edns ? [{ type: 'OPT', name: '.', udpPayloadSize: opts.edns, flags: 0 } as dnsPacket.Answer] : [],
  });
}

function add(t: NameTable, ep: string, host: string, names: string[], ipv4: string, ipv6: string | null = null, lnet = LNET): void {
  t.putName(lnet, ep, { host, containerId: ep, network: 'appnet', names, ipv4, ipv6 });
  t.putEndpoint(lnet, ep, { host, ipv4: `${ipv4}/16`, ipv6 });
}

function table(): NameTable {
  const t = new NameTable('h1');
  add(t, 'e1', 'h2', ['web'], '10.0.0.2', 'fd00::2');
  add(t, 'e2', 'h2', ['api'], '10.0.0.3');
  add(t, 'e3', 'h3', ['api'], '10.0.0.4');
  add(t, 'e4', 'h3', ['api'], '10.0.0.5');
  for (let i = 0; i < 40; i++) add(t, `big${i}`, 'h3', ['big-alias-name-that-takes-room'], `10.0.1.${i + 1}`);
  add(t, 'o1', 'h2', ['web'], '10.9.0.2', null, 'L2');
  return t;
}

function reply(d: ReturnType<AnswerCache['decide']>): Buffer {
  if (d.kind !== 'answer') throw new Error(`expected an answer, got ${JSON.stringify(d)}`);
  return d.reply;
}

function data(buf: Buffer): unknown[] {
  return (dnsPacket.decode(buf).answers ?? []).map((a) => (a as { data?: unknown }).data);
}

describe('src/names/answer-cache', () => {
  it('answers from the cache with the bytes decide() gives, for A, AAAA, NODATA, EDNS and flags', () => {
    const t = table();
    const cache = new AnswerCache(t);
    const cases: Buffer[] = [
      query('web', 'A', { id: 1 }),
      query('web.appnet', 'AAAA', { id: 2 }),
      query('web', 'MX', { id: 3 }),
      query('web', 'TXT', { id: 4, edns: 1232 }),
      query('web', 'A', { id: 5, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED, edns: 4096 }),
      query('web', 'A', { id: 6, flags: 0 }),
    ];
    for (const q of cases) {
      // Twice: the first fills the entry, the second is served from it.
      for (let i = 0; i < 2; i++) expect(reply(cache.decide(q, oneNetwork(LNET), 'udp'))).toEqual(reply(decide(q, oneNetwork(LNET), t, 'udp')));
    }
    // id 6 is served from id 1's entry (same name, type, no EDNS; only the flags differ).
    expect(cache.size).toBe(cases.length - 1);
  });

  it('keeps the case of the question as sent (DNS 0x20) in the question and the answers', () => {
    const cache = new AnswerCache(table());
    cache.decide(query('web', 'A'), oneNetwork(LNET), 'udp');
    const r = dnsPacket.decode(reply(cache.decide(query('wEb.ApPnEt', 'A', { id: 77 }), oneNetwork(LNET), 'udp')));
    expect(r.id).toBe(77);
    expect(r.questions?.[0].name).toBe('wEb.ApPnEt');
    expect(r.answers?.map((a) => a.name)).toEqual(['wEb.ApPnEt']);
    const again = dnsPacket.decode(reply(cache.decide(query('WEB', 'A', { id: 78 }), oneNetwork(LNET), 'udp')));
    expect([again.id, again.questions?.[0].name, data(reply(cache.decide(query('WEB', 'A'), oneNetwork(LNET), 'udp')))]).toEqual([78, 'WEB', ['10.0.0.2']]);
  });

  it('rotates a shared alias through every address, one step per query, like the table', () => {
    const cache = new AnswerCache(table());
    const seen = [0, 1, 2, 3].map(() => data(reply(cache.decide(query('api', 'A'), oneNetwork(LNET), 'udp'))));
    expect(seen[0]).toEqual(['10.0.0.3', '10.0.0.4', '10.0.0.5']);
    expect(seen[1]).toEqual(['10.0.0.4', '10.0.0.5', '10.0.0.3']);
    expect(seen[2]).toEqual(['10.0.0.5', '10.0.0.3', '10.0.0.4']);
    expect(seen[3]).toEqual(seen[0]);
  });

  it('never answers a removed name, a moved address or an endpoint gone from the cache', () => {
    const t = table();
    const cache = new AnswerCache(t);
    expect(data(reply(cache.decide(query('web', 'A'), oneNetwork(LNET), 'udp')))).toEqual(['10.0.0.2']);
    // Restarted with another address.
    t.putName(LNET, 'e1', { host: 'h2', containerId: 'e1', network: 'appnet', names: ['web'], ipv4: '10.0.0.9', ipv6: null });
    t.putEndpoint(LNET, 'e1', { host: 'h2', ipv4: '10.0.0.9/16', ipv6: null });
    expect(data(reply(cache.decide(query('web', 'A'), oneNetwork(LNET), 'udp')))).toEqual(['10.0.0.9']);
    // Its endpoint swept (host died): no answer, the query goes on.
    t.deleteEndpoint(LNET, 'e1');
    expect(cache.decide(query('web', 'A'), oneNetwork(LNET), 'udp').kind).toBe('forward');
    // Name record removed (container stopped).
    expect(data(reply(cache.decide(query('api', 'A'), oneNetwork(LNET), 'udp')))).toHaveLength(3);
    t.deleteName(LNET, 'e2');
    expect(new Set(data(reply(cache.decide(query('api', 'A'), oneNetwork(LNET), 'udp'))))).toEqual(new Set(['10.0.0.4', '10.0.0.5']));
    // A name that was unknown (cached as such) and then appears.
    expect(cache.decide(query('late', 'A'), oneNetwork(LNET), 'udp').kind).toBe('forward');
    add(t, 'e9', 'h2', ['late'], '10.0.0.30');
    expect(data(reply(cache.decide(query('late', 'A'), oneNetwork(LNET), 'udp')))).toEqual(['10.0.0.30']);
    // The whole table reloaded (store resync).
    t.clear();
    expect(cache.decide(query('late', 'A'), oneNetwork(LNET), 'udp').kind).toBe('forward');
  });

  it('answers each network only with its own names', () => {
    const cache = new AnswerCache(table());
    expect(data(reply(cache.decide(query('web', 'A'), oneNetwork(LNET), 'udp')))).toEqual(['10.0.0.2']);
    expect(data(reply(cache.decide(query('web', 'A'), oneNetwork('L2'), 'udp')))).toEqual(['10.9.0.2']);
    expect(cache.decide(query('api', 'A'), oneNetwork('L2'), 'udp').kind).toBe('forward');
  });

  it('leaves truncation, unknown names and unusual queries to decide()', () => {
    const t = table();
    const cache = new AnswerCache(t);
    const big = query('big-alias-name-that-takes-room', 'A');
    for (let i = 0; i < 2; i++) {
      const udp = dnsPacket.decode(reply(cache.decide(big, oneNetwork(LNET), 'udp')));
      expect((udp.flags ?? 0) & dnsPacket.TRUNCATED_RESPONSE).toBeTruthy();
      expect(udp.answers).toEqual([]);
      expect(data(reply(cache.decide(big, oneNetwork(LNET), 'tcp')))).toHaveLength(40);
    }
    const outside = cache.decide(query('outside.test', 'A'), oneNetwork(LNET), 'udp');
    expect(outside).toEqual(decide(query('outside.test', 'A'), oneNetwork(LNET), t, 'udp'));
    expect(outside).toEqual({ kind: 'forward', direct: true });
    // Two questions, a response, another class: not the plain shape, same answer as decide().
    const two = dnsPacket.encode({ id: 9, type: 'query', questions: [{ name: 'web', type: 'A', class: 'IN' }, { name: 'api', type: 'A', class: 'IN' }] });
    const resp = dnsPacket.encode({ id: 9, type: 'response', questions: [{ name: 'web', type: 'A', class: 'IN' }] });
    const chaos = dnsPacket.encode({ id: 9, type: 'query', questions: [{ name: 'web', type: 'A', class: 'CH' }] });
    for (const q of [two, resp, chaos, Buffer.from('garbage')]) {
      expect(parsePlainQuery(q)).toBeNull();
      expect(cache.decide(q, oneNetwork(LNET), 'udp')).toEqual(decide(q, oneNetwork(LNET), t, 'udp'));
    }
  });

  it('reads the plain shape of a query: name end, type, EDNS size; refuses odd bytes', () => {
    expect(parsePlainQuery(query('web', 'AAAA'))).toEqual({ nameEnd: 17, qtype: 28, edns: false, udpSize: 512 });
    expect(parsePlainQuery(query('web.appnet', 'A', { edns: 1400 }))).toEqual({ nameEnd: 24, qtype: 1, edns: true, udpSize: 1400 });
    const q = query('web', 'A');
    expect(parsePlainQuery(Buffer.concat([q, Buffer.from([0])]))).toBeNull(); // trailing byte
    expect(parsePlainQuery(q.subarray(0, q.length - 1))).toBeNull(); // cut short
    const compressed = Buffer.from(q);
    compressed[12] = 0xc0; // a compression pointer where the name starts
    expect(parsePlainQuery(compressed)).toBeNull();
    const escaped = Buffer.from(q);
    escaped[14] = 0x2e; // a '.' inside a label
    expect(parsePlainQuery(escaped)).toBeNull();
    const opcode = Buffer.from(q);
    opcode[2] |= 0x28; // opcode 5 (UPDATE)
    expect(parsePlainQuery(opcode)).toBeNull();
  });

  it('stays bounded under a flood of distinct names', () => {
    const cache = new AnswerCache(table());
    for (let i = 0; i < MAX_ENTRIES + 10; i++) cache.decide(query(`n${i}.example`, 'A'), oneNetwork(LNET), 'udp');
    expect(cache.size).toBeLessThanOrEqual(MAX_ENTRIES);
    expect(data(reply(cache.decide(query('web', 'A'), oneNetwork(LNET), 'udp')))).toEqual(['10.0.0.2']);
  });

  it('answers a name of any network in the scope, the asker\'s own network first, and forwards one outside it', () => {
    const t = table();
    add(t, 'x3', 'h3', ['only-l3'], '10.3.0.2', null, 'L3');
    const cache = new AnswerCache(t);
    const both = { lnets: ['L1', 'L2'], key: 'L1,L2' };
    // "web" is on L1 and L2: L1's (the source's network) answers.
    expect(data(reply(cache.decide(query('web', 'A'), both, 'udp')))).toEqual(['10.0.0.2']);
    expect(data(reply(cache.decide(query('web', 'A'), { lnets: ['L2', 'L1'], key: 'L2,L1' }, 'udp')))).toEqual(['10.9.0.2']);
    expect(cache.decide(query('only-l3', 'A'), both, 'udp').kind).toBe('forward');
    expect(data(reply(cache.decide(query('only-l3', 'A'), { lnets: ['L1', 'L3'], key: 'L1,L3' }, 'udp')))).toEqual(['10.3.0.2']);
    // decide() without the cache agrees, also for a query shape the cache does not take.
    expect(data(reply(decide(query('only-l3', 'A', { edns: 1232 }), { lnets: ['L1', 'L3'], key: 'L1,L3' }, t, 'udp')))).toEqual(['10.3.0.2']);
  });
});
