import * as dgram from 'node:dgram';
import * as net from 'node:net';
import * as dnsPacket from 'dns-packet';
import pino from 'pino';
import { decide, PLAIN_UDP_MAX } from '../../../src/names/answer';
import { NameTable, oneNetwork } from '../../../src/names/table';
import { UpstreamListener } from '../../../src/names/server';
import { frameTcp, unframeTcp } from '../../../src/names/forwarder';
import { directUpstreams } from '../../../src/names/container-redirect';
import type { NameMetrics, Outcome } from '../../../src/names/metrics';

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

function table(): NameTable {
  const t = new NameTable('h1');
  const add = (ep: string, host: string, names: string[], ipv4: string, ipv6: string | null = null): void => {
    t.putName(LNET, ep, { host, containerId: ep, network: 'appnet', names, ipv4, ipv6 });
    t.putEndpoint(LNET, ep, { host, ipv4: `${ipv4}/8`, ipv6 });
  };
  add('e1', 'h2', ['web'], '10.0.0.2', 'fd00::2');
  add('e2', 'h2', ['api'], '10.0.0.3');
  add('e3', 'h3', ['api'], '10.0.0.4');
  // Many containers behind one alias: more than fits in 512 bytes.
  for (let i = 0; i < 40; i++) add(`big${i}`, 'h3', ['big-alias-name-that-takes-room'], `10.0.1.${i + 1}`);
  // The asking container, on this host.
  add('self', 'h1', ['asker'], '127.0.0.1');
  return t;
}

describe('src/names/answer', () => {
  it('answers A and AAAA of a network name, keeping the id and RD, with a short TTL', () => {
    const t = table();
    const d = decide(query('web', 'A', { id: 7 }), oneNetwork(LNET), t, 'udp');
    expect(d.kind).toBe('answer');
    const r = dnsPacket.decode((d as { reply: Buffer }).reply);
    expect(r.id).toBe(7);
    expect(r.type).toBe('response');
    expect((r.flags ?? 0) & dnsPacket.RECURSION_DESIRED).toBeTruthy();
    expect(r.answers?.map((a) => [a.type, (a as { data?: unknown }).data, (a as { ttl?: number }).ttl])).toEqual([['A', '10.0.0.2', 1]]);
    const r6 = dnsPacket.decode((decide(query('web.appnet', 'AAAA'), oneNetwork(LNET), t, 'udp') as { reply: Buffer }).reply);
    expect(r6.answers?.map((a) => (a as { data?: unknown }).data)).toEqual(['fd00::2']);
  });

  it('rotates the addresses of an alias shared across hosts between queries', () => {
    const t = table();
    const order = (): unknown[] => dnsPacket.decode((decide(query('api', 'A'), oneNetwork(LNET), t, 'udp') as { reply: Buffer }).reply).answers!.map((a) => (a as { data?: unknown }).data);
    const a = order();
    const b = order();
    expect(new Set(a)).toEqual(new Set(['10.0.0.3', '10.0.0.4']));
    expect(b).toEqual([...a].reverse());
  });

  it('forwards unknown names, names of other networks and unparsable bytes', () => {
    const t = table();
    expect(decide(query('outside.test', 'A'), oneNetwork(LNET), t, 'udp').kind).toBe('forward');
    expect(decide(query('web', 'A'), oneNetwork('OTHER'), t, 'udp').kind).toBe('forward');
    expect(decide(Buffer.from('garbage'), oneNetwork(LNET), t, 'udp').kind).toBe('forward');
  });

  it('marks as direct only what Docker would forward unchanged', () => {
    const t = table();
    const direct = (buf: Buffer): unknown => (decide(buf, oneNetwork(LNET), t, 'udp') as { direct?: boolean }).direct;
    expect(direct(query('outside.test', 'A'))).toBe(true);
    expect(direct(query('Outside.Test.', 'AAAA'))).toBe(true);
    // Single labels (ndots), reverse lookups, other types, NAME.NETWORK shapes: Docker decides.
    expect(direct(query('nosuch', 'A'))).toBe(false);
    expect(direct(query('2.0.0.10.in-addr.arpa', 'PTR'))).toBe(false);
    expect(direct(query('2.0.0.10.in-addr.arpa', 'A'))).toBe(false);
    expect(direct(query('outside.test', 'MX'))).toBe(false);
    expect(direct(query('starting.appnet', 'A'))).toBe(false);
    expect(direct(Buffer.from('garbage'))).toBe(false);
    // Known names are answered, never forwarded.
    expect(decide(query('web.appnet', 'A'), oneNetwork(LNET), t, 'udp').kind).toBe('answer');
  });

  it('sends a container\'s outside names directly only to the servers Docker would use', () => {
    expect(directUpstreams({ dns: [], dockerOnly: false }, ['192.0.2.53', '192.0.2.54'])).toEqual(['192.0.2.53', '192.0.2.54']);
    expect(directUpstreams({ dns: ['198.51.100.1'], dockerOnly: false }, ['192.0.2.53'])).toEqual(['198.51.100.1']);
    expect(directUpstreams({ dns: [], dockerOnly: false }, ['1.1.1.1', '1.0.0.1', '8.8.8.8', '8.8.4.4'])).toEqual(['1.1.1.1', '1.0.0.1', '8.8.8.8']);
    // Another network, a link, an internal network; a loopback or IPv6 server; none at all.
    expect(directUpstreams({ dns: [], dockerOnly: true }, ['192.0.2.53'])).toBeNull();
    expect(directUpstreams({ dns: [], dockerOnly: false }, ['127.0.0.53'])).toBeNull();
    expect(directUpstreams({ dns: [], dockerOnly: false }, ['192.0.2.53', '127.0.0.53'])).toBeNull();
    expect(directUpstreams({ dns: ['2001:db8::53'], dockerOnly: false }, ['192.0.2.53'])).toBeNull();
    expect(directUpstreams({ dns: [], dockerOnly: false }, [])).toBeNull();
  });

  it('sets TC over UDP when the answer does not fit, and answers in full over TCP', () => {
    const t = table();
    const udp = dnsPacket.decode((decide(query('big-alias-name-that-takes-room', 'A'), oneNetwork(LNET), t, 'udp') as { reply: Buffer }).reply);
    expect((udp.flags ?? 0) & dnsPacket.TRUNCATED_RESPONSE).toBeTruthy();
    expect(udp.answers).toEqual([]);
    const tcp = decide(query('big-alias-name-that-takes-room', 'A'), oneNetwork(LNET), t, 'tcp') as { reply: Buffer };
    expect(tcp.reply.length).toBeGreaterThan(PLAIN_UDP_MAX);
    expect(dnsPacket.decode(tcp.reply).answers).toHaveLength(40);
    // With a large enough EDNS size, UDP carries it all.
    const edns = dnsPacket.decode((decide(query('big-alias-name-that-takes-room', 'A', { edns: 4096 }), oneNetwork(LNET), t, 'udp') as { reply: Buffer }).reply);
    expect(edns.answers).toHaveLength(40);
  });
});

describe('src/names/server', () => {
  // A fake upstream on loopback that records what it received and answers with TC set.
  let upstreamUdp: dgram.Socket;
  let upstreamTcp: net.Server;
  let listener: UpstreamListener;
  const received: Buffer[] = [];
  const outcomes: Outcome[] = [];
  const upstreamPort = 20000 + Math.floor(Math.random() * 20000);
  const listenPort = upstreamPort + 1;

  function upstreamReply(q: Buffer): Buffer {
    const p = dnsPacket.decode(q);
    return dnsPacket.encode({ id: p.id, type: 'response', flags: dnsPacket.TRUNCATED_RESPONSE, questions: p.questions, answers: [] });
  }

  beforeAll(async () => {
    upstreamUdp = dgram.createSocket('udp4');
    upstreamUdp.on('message', (m, r) => {
      received.push(m);
      upstreamUdp.send(upstreamReply(m), r.port, r.address);
    });
    await new Promise<void>((res) => upstreamUdp.bind(upstreamPort, '127.0.0.1', res));
    upstreamTcp = net.createServer((c) => {
      let buf: Buffer = Buffer.alloc(0);
      c.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        const one = unframeTcp(buf);
        if (!one) return;
        received.push(Buffer.from(one.msg));
        const p = dnsPacket.decode(one.msg);
        c.write(frameTcp(dnsPacket.encode({ id: p.id, type: 'response', flags: 0, questions: p.questions, answers: [{ type: 'A', name: 'outside.test', data: '192.0.2.9', ttl: 5 }] })));
      });
    });
    await new Promise<void>((res) => upstreamTcp.listen(upstreamPort, '127.0.0.1', res));
    const metrics: NameMetrics = { observe: (_t, o) => void outcomes.push(o) };
    listener = await UpstreamListener.open('127.0.0.1', listenPort, { table: table(), metrics, log: pino({ level: 'silent' }), upstreamPort });
  });

  afterAll(async () => {
    await listener.close();
    upstreamUdp.close();
    await new Promise((res) => upstreamTcp.close(res));
  });

  function askUdp(msg: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const s = dgram.createSocket('udp4');
      const timer = setTimeout(() => reject(new Error('no reply')), 3000);
      s.on('message', (m) => {
        clearTimeout(timer);
        s.close();
        resolve(m);
      });
      s.send(msg, listenPort, '127.0.0.1');
    });
  }

  it('forwards an unknown name byte for byte (id, flags, EDNS) and passes truncation back', async () => {
    const q = query('outside.test', 'A', { id: 999, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED, edns: 1400 });
    const reply = await askUdp(q);
    expect(received.at(-1)).toEqual(q);
    const r = dnsPacket.decode(reply);
    expect(r.id).toBe(999);
    expect((r.flags ?? 0) & dnsPacket.TRUNCATED_RESPONSE).toBeTruthy();
    expect(outcomes.at(-1)).toBe('forward');
  });

  it('answers a network name itself, without asking the upstream', async () => {
    const before = received.length;
    const r = dnsPacket.decode(await askUdp(query('web', 'A')));
    expect(r.answers?.map((a) => (a as { data?: unknown }).data)).toEqual(['10.0.0.2']);
    expect(received.length).toBe(before);
    expect(outcomes.at(-1)).toBe('answer');
  });

  it('forwards over TCP for TCP queries', async () => {
    const q = query('outside.test', 'A', { id: 31 });
    const reply = await new Promise<Buffer>((resolve, reject) => {
      const c = net.connect(listenPort, '127.0.0.1', () => c.write(frameTcp(q)));
      let buf: Buffer = Buffer.alloc(0);
      c.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        const one = unframeTcp(buf);
        if (one) {
          c.destroy();
          resolve(Buffer.from(one.msg));
        }
      });
      c.on('error', reject);
    });
    expect(received.at(-1)).toEqual(q);
    const r = dnsPacket.decode(reply);
    expect(r.id).toBe(31);
    expect(r.answers?.map((a) => (a as { data?: unknown }).data)).toEqual(['192.0.2.9']);
  });

  it('front: sends a direct name straight to the container\'s server, and answers network names itself', async () => {
    const metrics: NameMetrics = { observe: (_t, o) => void outcomes.push(o) };
    const asked: string[] = [];
    const front = await UpstreamListener.openFront(listenPort + 1, {
      table: table(), metrics, log: pino({ level: 'silent' }), upstreamPort,
      direct: (ip) => (asked.push(ip), ['127.0.0.1']),
    });
    try {
      const ask = (msg: Buffer): Promise<Buffer> =>
        new Promise((resolve, reject) => {
          const s = dgram.createSocket('udp4');
          const timer = setTimeout(() => reject(new Error('no reply')), 3000);
          s.on('message', (m) => {
            clearTimeout(timer);
            s.close();
            resolve(m);
          });
          s.send(msg, listenPort + 1, '127.0.0.1');
        });
      const q = query('outside.test', 'A', { id: 555, edns: 1400 });
      const r = dnsPacket.decode(await ask(q));
      expect(r.id).toBe(555);
      expect(received.at(-1)).toEqual(q);
      expect(asked).toEqual(['127.0.0.1']);
      expect(outcomes.at(-1)).toBe('forward');
      const before = received.length;
      expect(dnsPacket.decode(await ask(query('web', 'A'))).answers?.map((a) => (a as { data?: unknown }).data)).toEqual(['10.0.0.2']);
      expect(received.length).toBe(before);
    } finally {
      await front.close();
    }
  });
});
