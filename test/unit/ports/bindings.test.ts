import { collides, portRequests, PORTMAP_OPTION, requestText } from '../../../src/ports/bindings';
import { VxnetError } from '../../../src/errors';

const entry = (over: Record<string, unknown> = {}): Record<string, unknown> => ({ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080, ...over });
const opts = (...entries: unknown[]): Record<string, unknown> => ({ [PORTMAP_OPTION]: entries });

describe('src/ports/bindings.ts', () => {
  it('reads each -p form dockerd sends', () => {
    expect(
      portRequests(opts(
        entry(), // -p 8080:80
        entry({ HostIP: '127.0.0.1', HostPort: 8081, HostPortEnd: 8081 }), // -p 127.0.0.1:8081:80
        entry({ HostPort: 0, HostPortEnd: 0 }), // -p 80 and -P
        entry({ HostPort: 8000, HostPortEnd: 8010 }), // -p 8000-8010:80
        entry({ Proto: 17, Port: 53, HostPort: 5353, HostPortEnd: 5353 }), // -p 5353:53/udp
        entry({ HostIP: '0.0.0.0', HostPortEnd: undefined }),
      )),
    ).toEqual([
      { proto: 'tcp', hostIp: '0.0.0.0', hostPort: 8080, hostPortEnd: 8080, containerPort: 80 },
      { proto: 'tcp', hostIp: '127.0.0.1', hostPort: 8081, hostPortEnd: 8081, containerPort: 80 },
      { proto: 'tcp', hostIp: '0.0.0.0', hostPort: 0, hostPortEnd: 0, containerPort: 80 },
      { proto: 'tcp', hostIp: '0.0.0.0', hostPort: 8000, hostPortEnd: 8010, containerPort: 80 },
      { proto: 'udp', hostIp: '0.0.0.0', hostPort: 5353, hostPortEnd: 5353, containerPort: 53 },
      { proto: 'tcp', hostIp: '0.0.0.0', hostPort: 8080, hostPortEnd: 8080, containerPort: 80 },
    ]);
  });

  it.each([[undefined], [null], [{}]])('no portmap (%p) asks for nothing', (o) => {
    expect(portRequests(o as Record<string, unknown> | null | undefined)).toEqual([]);
    expect(portRequests({ [PORTMAP_OPTION]: [] })).toEqual([]);
  });

  it.each([
    [{ [PORTMAP_OPTION]: 'x' }, /com\.docker\.network\.portmap must be a list, not "x"/],
    [{ [PORTMAP_OPTION]: {} }, /must be a list, not an object/],
    [opts(7), /portmap\[0\] must be an object, not 7/],
    [opts(entry(), null), /portmap\[1\] must be an object, not null/],
    [opts([1]), /portmap\[0\] must be an object, not a list/],
    [opts(entry({ Proto: 132 })), /portmap\[0\]\.Proto: sctp is not supported by vxnet/],
    [opts(entry({ Proto: 1 })), /portmap\[0\]\.Proto: unknown protocol 1 \(want 6 for tcp or 17 for udp\)/],
    [opts(entry({ Proto: 'tcp' })), /Proto: unknown protocol "tcp"/],
    [opts(entry({ Proto: undefined })), /Proto: unknown protocol undefined/],
    [opts(entry({ Port: 0 })), /portmap\[0\]\.Port: 0 is not a port number \(1-65535\)/],
    [opts(entry({ Port: 70000 })), /\.Port: 70000 is not a port number/],
    [opts(entry({ Port: 80.5 })), /\.Port: 80\.5 is not a port number/],
    [opts(entry({ Port: '80' })), /\.Port: "80" is not a port number/],
    [opts(entry({ HostPort: -1 })), /\.HostPort: -1 is not a port number \(0-65535\)/],
    [opts(entry({ HostPort: 65536, HostPortEnd: 65536 })), /\.HostPort: 65536 is not a port number/],
    [opts(entry({ HostPortEnd: 'x' })), /\.HostPortEnd: "x" is not a port number/],
    [opts(entry({ HostPort: 8010, HostPortEnd: 8000 })), /host port range 8010-8000 ends before it starts/],
    [opts(entry({ HostPort: 0, HostPortEnd: 9000 })), /HostPortEnd 9000 given without a HostPort/],
    [opts(entry({ HostIP: 'localhost' })), /\.HostIP: "localhost" is not an IPv4 address/],
    [opts(entry({ HostIP: '10.0.0.256' })), /\.HostIP: "10\.0\.0\.256" is not an IPv4 address/],
    [opts(entry({ HostIP: '::' })), /\.HostIP: IPv6 host address :: is not supported by vxnet/],
    [opts(entry({ HostIP: 7 })), /\.HostIP: 7 is not an address/],
    [opts(entry(), entry({ Port: -5 })), /portmap\[1\]\.Port: -5/],
    [{ [PORTMAP_OPTION]: new Array(1025).fill(entry()) }, /asks for 1025 ports; at most 1024 per container/],
  ])('refuses %j naming the bad part', (o, msg) => {
    let err: unknown;
    try {
      portRequests(o as Record<string, unknown>);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VxnetError);
    expect((err as VxnetError).code).toBe('VXNET_ERR_BAD_REQUEST');
    expect((err as Error).message).toMatch(msg);
  });

  it('never crashes on random bodies: a bad request or a result', () => {
    const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)];
    const values = [0, 1, 6, 17, 132, -1, 65535, 65536, 1.5, '', '1.2.3.4', '::1', null, undefined, {}, [], 'tcp', true];
    for (let i = 0; i < 2000; i++) {
      const e = Object.fromEntries(['Proto', 'Port', 'HostIP', 'HostPort', 'HostPortEnd'].map((k) => [k, pick(values)]));
      try {
        const [r] = portRequests(opts(e));
        expect(r.hostPort).toBeLessThanOrEqual(r.hostPortEnd);
      } catch (err) {
        expect((err as VxnetError).code).toBe('VXNET_ERR_BAD_REQUEST');
      }
    }
  });

  it('names requests as users typed them', () => {
    const [fixed, any, range] = portRequests(opts(entry(), entry({ HostPort: 0, HostPortEnd: 0, Proto: 17 }), entry({ HostPort: 8000, HostPortEnd: 8002 })));
    expect([requestText(fixed), requestText(any), requestText(range)]).toEqual([
      '0.0.0.0:8080/tcp (container port 80)',
      '0.0.0.0:a free port/udp (container port 80)',
      '0.0.0.0:8000-8002/tcp (container port 80)',
    ]);
  });

  it.each([
    ['0.0.0.0', 'tcp', '127.0.0.1', 'tcp', true],
    ['127.0.0.1', 'tcp', '0.0.0.0', 'tcp', true],
    ['127.0.0.1', 'tcp', '127.0.0.1', 'tcp', true],
    ['127.0.0.1', 'tcp', '10.0.0.1', 'tcp', false],
    ['0.0.0.0', 'tcp', '0.0.0.0', 'udp', false],
  ] as const)('%s/%s and %s/%s on one port collide: %s', (ipA, pa, ipB, pb, want) => {
    expect(collides({ proto: pa, hostIp: ipA, hostPort: 80 }, { proto: pb, hostIp: ipB, hostPort: 80 })).toBe(want);
    expect(collides({ proto: pa, hostIp: ipA, hostPort: 80 }, { proto: pb, hostIp: ipB, hostPort: 81 })).toBe(false);
  });
});
