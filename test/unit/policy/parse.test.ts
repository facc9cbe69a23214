import { parseAllow, parseEgress } from '../../../src/policy/parse';
import { endpointPolicyOptions } from '../../../src/policy/options';
import { VxnetError } from '../../../src/errors';

describe('vxnet.allow grammar', () => {
  it.each([
    ['api:5432', [{ source: { kind: 'name', name: 'api' }, ports: { from: 5432, to: 5432, proto: 'tcp' } }]],
    ['web', [{ source: { kind: 'name', name: 'web' }, ports: null }]],
    ['Web.Front_1', [{ source: { kind: 'name', name: 'web.front_1' }, ports: null }]],
    ['10.9.0.0/16:22', [{ source: { kind: 'cidr', cidr: '10.9.0.0/16', family: 4 }, ports: { from: 22, to: 22, proto: 'tcp' } }]],
    ['10.9.1.7', [{ source: { kind: 'cidr', cidr: '10.9.1.7/32', family: 4 }, ports: null }]],
    ['10.9.1.7/24:53/udp', [{ source: { kind: 'cidr', cidr: '10.9.1.0/24', family: 4 }, ports: { from: 53, to: 53, proto: 'udp' } }]],
    ['label:role=client:8000-8080', [{ source: { kind: 'label', key: 'role', value: 'client' }, ports: { from: 8000, to: 8080, proto: 'tcp' } }]],
    ['label:com.example/tier=db', [{ source: { kind: 'label', key: 'com.example/tier', value: 'db' }, ports: null }]],
    ['[fd00::/64]:22', [{ source: { kind: 'cidr', cidr: 'fd00::/64', family: 6 }, ports: { from: 22, to: 22, proto: 'tcp' } }]],
    ['[fd00::1]', [{ source: { kind: 'cidr', cidr: 'fd00::1/128', family: 6 }, ports: null }]],
  ])('%s', (text, want) => {
    expect(parseAllow(text)).toEqual(want.map((w) => ({ text, ...w })));
  });

  it('splits on commas and spaces, skipping empty entries', () => {
    expect(parseAllow(' api:5432,web  10.9.0.0/16:22 ,, ').map((r) => r.text)).toEqual(['api:5432', 'web', '10.9.0.0/16:22']);
    expect(parseAllow('')).toEqual([]);
  });

  it.each([
    ['api:99999', 'vxnet.allow: bad entry "api:99999": port 99999 is outside 1-65535'],
    ['api:0', 'vxnet.allow: bad entry "api:0": port 0 is outside 1-65535'],
    ['api:90-80', 'vxnet.allow: bad entry "api:90-80": port range 90-80 runs backwards'],
    ['api:80/icmp', 'vxnet.allow: bad entry "api:80/icmp": protocol "icmp" is not tcp or udp'],
    ['api:80/tcp/x', 'vxnet.allow: bad entry "api:80/tcp/x": "80/tcp/x" has more than one "/"'],
    ['api:http', 'vxnet.allow: bad entry "api:http": ports "http" are not a port or a range A-B'],
    [':80', 'vxnet.allow: bad entry ":80": the source is empty'],
    ['10.1.2.300/24', 'vxnet.allow: bad entry "10.1.2.300/24": "10.1.2.300/24" is not a valid IPv4 address or CIDR'],
    ['10.1.2.3/33:22', 'vxnet.allow: bad entry "10.1.2.3/33:22": "10.1.2.3/33" is not a valid IPv4 address or CIDR'],
    ['[fd00::/64:22', 'vxnet.allow: bad entry "[fd00::/64:22": an IPv6 source opens "[" without a closing "]"'],
    ['[fd00::]x', 'vxnet.allow: bad entry "[fd00::]x": unexpected "x" after "]"'],
    ['[10.0.0.1]', 'vxnet.allow: bad entry "[10.0.0.1]": "[10.0.0.1]": brackets are for IPv6 CIDRs only'],
    ['label:role', 'vxnet.allow: bad entry "label:role": "label:role" is not label:KEY=VALUE'],
    ['label:=x', 'vxnet.allow: bad entry "label:=x": "label:=x" is not label:KEY=VALUE'],
    ['we$b', 'vxnet.allow: bad entry "we$b": "we$b" is not a container name, alias, label:KEY=VALUE or CIDR'],
  ])('refuses %s', (text, message) => {
    let err: unknown;
    try {
      parseAllow(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VxnetError);
    expect((err as VxnetError).code).toBe('VXNET_ERR_BAD_POLICY');
    expect((err as VxnetError).message).toBe(message);
  });
});

describe('vxnet.egress grammar', () => {
  it('takes CIDRs with optional ports', () => {
    expect(parseEgress('10.200.0.0/24:80-81, 192.0.2.1:53/udp [2001:db8::/32]')).toEqual([
      { text: '10.200.0.0/24:80-81', cidr: '10.200.0.0/24', family: 4, ports: { from: 80, to: 81, proto: 'tcp' } },
      { text: '192.0.2.1:53/udp', cidr: '192.0.2.1/32', family: 4, ports: { from: 53, to: 53, proto: 'udp' } },
      { text: '[2001:db8::/32]', cidr: '2001:db8::/32', family: 6, ports: null },
    ]);
  });

  it('refuses names (egress names addresses)', () => {
    expect(() => parseEgress('example')).toThrow('vxnet.egress: bad entry "example": "example" is not a CIDR (egress rules name addresses: a.b.c.d/len, [v6::/len])');
  });
});

describe('endpoint driver options', () => {
  it('keeps the validated values, and nothing when absent', () => {
    expect(endpointPolicyOptions({ 'vxnet.allow': ' web:80 ', other: 'x' })).toEqual({ allow: 'web:80' });
    expect(endpointPolicyOptions({})).toEqual({});
    expect(endpointPolicyOptions(null)).toEqual({});
  });

  it('names the bad option and entry', () => {
    expect(() => endpointPolicyOptions({ 'vxnet.egress': '10.0.0.0/8:x' })).toThrow('vxnet.egress: bad entry "10.0.0.0/8:x": ports "x" are not a port or a range A-B');
    expect(() => endpointPolicyOptions({ 'vxnet.allow': 5 })).toThrow('vxnet.allow must be a string, got 5');
  });
});
