import { explain } from '../../../src/policy/explain';
import type { PolicyInput } from '../../../src/policy/resolve';
import { emptyPolicySets, parseListing, diffScript, replaceScript, mirrorFillScript } from '../../../src/dataplane/policy-table';
import type { EndpointRecord, NetworkRecord } from '../../../src/network/records';
import type { NameRecord } from '../../../src/names/records';

const NET: NetworkRecord = { lnet: 'n1', vni: 256, ipv4: { subnet: '10.5.0.0/24', gateway: '10.5.0.1', poolId: null }, ipv6: null, mtu: 1450, internal: false, icc: false };

function ep(host: string, ip: string, extra: Partial<EndpointRecord> = {}): EndpointRecord {
  return { networkId: 'd1', host, vtep: null, mac: '02:00:00:00:00:01', ipv4: `${ip}/24`, ipv6: null, ...extra };
}
function name(host: string, ip: string, names: string[], labels: Record<string, string> = {}): NameRecord {
  return { host, containerId: `${names[0]}000000000000000000`, network: 'n1', names, ipv4: ip, ipv6: null, labels };
}

const input: PolicyInput = {
  host: 'h1',
  networks: new Map([['n1', NET]]),
  endpoints: new Map([
    ['n1/e1', ep('h2', '10.5.0.2', { allow: 'api:5432' })],
    ['n1/e2', ep('h1', '10.5.0.3')],
    ['n1/e3', ep('h3', '10.5.0.4')],
  ]),
  names: new Map([
    ['n1/e1', name('h2', '10.5.0.2', ['db'])],
    ['n1/e2', name('h1', '10.5.0.3', ['api'])],
    ['n1/e3', name('h3', '10.5.0.4', ['web'], { 'vxnet.allow': '10.5.0.0/24:80' })],
  ]),
  pending: new Set(),
};

describe('policy explain', () => {
  it('names the rule that allows, decided as the destination host decides', () => {
    const e = explain(input, 'api', 'db', 5432, 'tcp');
    expect(e).toMatchObject({ allowed: true, rule: 'api:5432', to: { ip: '10.5.0.2', host: 'h2', network: 'n1' }, from: { ip: '10.5.0.3' } });
    expect(e.reason).toBe('db\'s rule "api:5432" (option) allows it');
  });

  it('says why it refuses: no matching rule, isolated network, label rules', () => {
    expect(explain(input, 'api', 'db', 5433, 'tcp').reason).toBe('none of db\'s allow rules (api:5432) matches 10.5.0.3 on 5433/tcp');
    expect(explain(input, 'web', 'api', 80, 'tcp').reason).toBe('network n1 is isolated (enable_icc=false) and api has no allow rule');
    expect(explain(input, '10.5.0.3', 'web', 80, 'tcp')).toMatchObject({ allowed: true, rule: '10.5.0.0/24:80' });
    expect(explain(input, 'api', 'web', 80, 'udp').allowed).toBe(false);
  });

  it('refuses to guess unknown names', () => {
    expect(() => explain(input, 'api', 'nosuch', 80, 'tcp')).toThrow('no container or address "nosuch" on a vxnet network');
    expect(() => explain(input, 'nosuch', 'db', 80, 'tcp')).toThrow('"nosuch" is neither a container on the network of "db" (n1) nor an IP address');
  });
});

// A dual-stack isolated network: rules are decided per family, with that family's sources.
const NET6: NetworkRecord = { ...NET, lnet: 'n6', ipv4: { subnet: '10.6.0.0/24', gateway: '10.6.0.1', poolId: null }, ipv6: { subnet: 'fd06::/64', gateway: 'fd06::1', poolId: null } };
function ep6(host: string, n: number, extra: Partial<EndpointRecord> = {}): EndpointRecord {
  return { ...ep(host, `10.6.0.${n}`, extra), ipv6: `fd06::${n}/64` };
}
function name6(host: string, n: number, names: string[], labels: Record<string, string> = {}): NameRecord {
  return { ...name(host, `10.6.0.${n}`, names, labels), network: 'n6', ipv6: `fd06::${n}` };
}
const input6: PolicyInput = {
  host: 'h1',
  networks: new Map([['n1', NET], ['n6', NET6]]),
  endpoints: new Map([
    ...input.endpoints,
    ['n6/f1', ep6('h2', 2, { allow: 'api:5432' })],
    ['n6/f2', ep6('h1', 3)],
    ['n6/f3', ep6('h3', 4)],
    ['n6/f4', { ...ep('h3', '10.6.0.5'), ipv6: null }],
  ]),
  names: new Map([
    ...input.names,
    ['n6/f1', name6('h2', 2, ['db6'])],
    ['n6/f2', name6('h1', 3, ['api'])],
    ['n6/f3', name6('h3', 4, ['web6'], { 'vxnet.allow': '[fd06::/64]:80' })],
    ['n6/f4', { ...name('h3', '10.6.0.5', ['v4only']), network: 'n6' }],
  ]),
  pending: new Set(),
};

describe('policy explain over IPv6', () => {
  it('explains IPv6 when asked, or when an IPv6 address is given (any spelling)', () => {
    expect(explain(input6, 'api', 'db6', 5432, 'tcp', 6)).toMatchObject({
      allowed: true, family: 6, rule: 'api:5432', from: { ip: 'fd06::3' }, to: { ip: 'fd06::2', host: 'h2', network: 'n6' },
    });
    expect(explain(input6, 'api', 'db6', 5432, 'tcp')).toMatchObject({ allowed: true, family: 4, from: { ip: '10.6.0.3' }, to: { ip: '10.6.0.2' } });
    expect(explain(input6, 'fd06:0:0:0::3', 'db6', 5432, 'tcp')).toMatchObject({ allowed: true, family: 6, from: { ip: 'fd06::3' } });
    expect(explain(input6, 'api', '[FD06::2]', 5432, 'tcp')).toMatchObject({ allowed: true, family: 6, to: { name: '[FD06::2]', ip: 'fd06::2' } });
    expect(explain(input6, 'api', 'db6', 5433, 'tcp', 6).reason).toBe('none of db6\'s allow rules (api:5432) matches fd06::3 on 5433/tcp');
    expect(explain(input6, 'fd06::99', 'db6', 5432, 'tcp').allowed).toBe(false);
  });

  it('decides each family with its own sources, as the kernel does: an IPv6 CIDR rule lets no IPv4 peer in', () => {
    expect(explain(input6, 'api', 'web6', 80, 'tcp', 6)).toMatchObject({ allowed: true, rule: '[fd06::/64]:80' });
    expect(explain(input6, 'fd06::abcd', 'web6', 80, 'tcp')).toMatchObject({ allowed: true, rule: '[fd06::/64]:80' });
    expect(explain(input6, 'api', 'web6', 80, 'tcp').reason).toBe('none of web6\'s allow rules ([fd06::/64]:80) matches 10.6.0.3 on 80/tcp');
    expect(explain(input6, 'web6', 'api', 80, 'tcp', 6).reason).toBe('network n6 is isolated (enable_icc=false) and api has no allow rule');
  });

  it('refuses what it cannot answer, naming the part', () => {
    expect(() => explain(input6, '10.6.0.3', 'fd06::2', 80, 'tcp')).toThrow('"10.6.0.3" and "fd06::2" are addresses of different families');
    expect(() => explain(input6, 'api', 'db', 5432, 'tcp', 6)).toThrow('"db" has no IPv6 address on network n1');
    expect(() => explain(input6, 'v4only', 'db6', 5432, 'tcp', 6)).toThrow('"v4only" has no IPv6 address on network n6');
    expect(() => explain(input6, 'api', '10.6.0.2', 5432, 'tcp', 6)).toThrow('IPv6 asked, but an IPv4 address was given');
  });
});

describe('policy table scripts', () => {
  const sets = { ...emptyPolicySets(), policedIn: ['10.5.0.2'], allowIn: ['10.5.0.2 . 10.5.0.0-10.5.0.255 . 6 . 80', '10.5.0.2 . 10.5.0.3 . 0-255 . 0-65535'], allowOut: [] };

  it('reads the kernel listing back in its own syntax (prefixes as ranges)', () => {
    const listing = `table inet vxnet-policy {
	set policed_in {
		type ipv4_addr
		elements = { 10.5.0.2 }
	}
	set policed_out {
		type ipv4_addr
	}
	set allow_in {
		type ipv4_addr . ipv4_addr . inet_proto . inet_service
		flags interval
		elements = { 10.5.0.2 . 10.5.0.0/24 . 6 . 80,
			     10.5.0.2 . 10.5.0.3 . 0-255 . 0-65535 }
	}
}`;
    expect(parseListing(listing)).toEqual(sets);
  });

  it('changes only what differs, deletions first, and refuses malformed elements', () => {
    const to = { ...sets, allowIn: ['10.5.0.2 . 10.5.0.3 . 0-255 . 0-65535', '10.5.0.2 . 10.5.0.9 . 17 . 53'] };
    expect(diffScript(sets, to)).toBe(
      'delete element inet vxnet-policy allow_in { 10.5.0.2 . 10.5.0.0-10.5.0.255 . 6 . 80 }\nadd element inet vxnet-policy allow_in { 10.5.0.2 . 10.5.0.9 . 17 . 53 }\n',
    );
    expect(diffScript(sets, sets)).toBe('');
    expect(() => replaceScript({ ...sets, policedIn: ['10.5.0.2; flush ruleset'] })).toThrow('refusing policy set element');
  });

  it('keeps the drop counting sets and the fast path\'s copies in step with the policed ones, IPv6 included', () => {
    const six = { ...sets, policedIn6: ['fd05::2'], policedOut6: ['fd05::3'] };
    expect(mirrorFillScript(six)).toBe(
      'add element inet vxnet-policy drop_in { 10.5.0.2 }\nadd element bridge vxnet-policy policed_in { 10.5.0.2 }\n' +
        'add element inet vxnet-policy drop_in6 { fd05::2 }\nadd element bridge vxnet-policy policed_in6 { fd05::2 }\n' +
        'add element inet vxnet-policy drop_out6 { fd05::3 }\nadd element bridge vxnet-policy policed_out6 { fd05::3 }\n',
    );
    expect(diffScript(six, sets)).toBe(
      'delete element inet vxnet-policy policed_in6 { fd05::2 }\ndelete element inet vxnet-policy drop_in6 { fd05::2 }\ndelete element bridge vxnet-policy policed_in6 { fd05::2 }\n' +
        'delete element inet vxnet-policy policed_out6 { fd05::3 }\ndelete element inet vxnet-policy drop_out6 { fd05::3 }\ndelete element bridge vxnet-policy policed_out6 { fd05::3 }\n',
    );
    expect(replaceScript(six)).toContain('flush set bridge vxnet-policy policed_out6');
    expect(replaceScript(six)).toContain('flush set inet vxnet-policy drop_out6');
  });
});
