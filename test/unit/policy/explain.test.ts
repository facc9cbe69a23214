import { explain } from '../../../src/policy/explain';
import type { PolicyInput } from '../../../src/policy/resolve';
import { emptyPolicySets, parseListing, diffScript, replaceScript } from '../../../src/dataplane/policy-table';
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
    expect(() => explain(input, 'nosuch', 'db', 80, 'tcp')).toThrow('"nosuch" is neither a container on the network of "db" (n1) nor an IPv4 address');
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
});
