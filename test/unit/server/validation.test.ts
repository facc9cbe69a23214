// Bad input on any endpoint: a 500 with a message naming what was wrong, and nothing changed.
import { pluginApp, PluginApp, NET_ID, EP_ID } from '../../helpers/plugin-app';
import { recordingDataplane, RecordingDataplane } from '../../helpers/recording-dataplane';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';
import { createNetwork, runContainer, CreatedNetwork } from '../../helpers/docker-flow';
import type { Store } from '../../../src/store/types';

const POOL = 'vxnet-local/10.1.0.0/24';
const okNet = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  NetworkID: '0999'.padEnd(64, 'e'),
  Options: { 'com.docker.network.generic': {} },
  IPv4Data: [{ AddressSpace: 'vxnet-local', Pool: '10.1.0.0/24', Gateway: '10.1.0.1/24' }],
  IPv6Data: [],
  ...over,
});
const ep = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  NetworkID: NET_ID,
  EndpointID: '7'.repeat(64),
  Interface: { Address: '10.1.0.50/24', AddressIPv6: '', MacAddress: '' },
  Options: {},
  ...over,
});

const CASES: Array<[string, string, unknown, RegExp]> = [
  ['malformed JSON', '/NetworkDriver.CreateNetwork', '{"NetworkID": ', /not valid JSON/],
  ['empty body (re-sent after a plugin restart)', '/NetworkDriver.Join', undefined, /must have required property 'NetworkID'/],
  ['empty body', '/NetworkDriver.CreateEndpoint', undefined, /NetworkID/],
  ['empty body', '/IpamDriver.RequestAddress', undefined, /PoolID/],
  ['JSON that is not an object', '/NetworkDriver.DeleteNetwork', '[1,2]', /must be object/],
  ['NetworkID of the wrong type', '/NetworkDriver.CreateNetwork', okNet({ NetworkID: 42 }), /NetworkID must be string/],
  ['NetworkID with a path', '/NetworkDriver.DeleteNetwork', { NetworkID: '../../etc/passwd' }, /NetworkID must match pattern/],
  ['EndpointID with a slash', '/NetworkDriver.Join', { NetworkID: NET_ID, EndpointID: 'abc/def0123456', SandboxKey: '/x' }, /EndpointID must match pattern/],
  ['Options of the wrong type', '/NetworkDriver.CreateNetwork', okNet({ Options: 'yes' }), /Options must be object/],
  ['IPv4Data not a list', '/NetworkDriver.CreateNetwork', okNet({ IPv4Data: {} }), /IPv4Data/],
  ['an invalid pool', '/NetworkDriver.CreateNetwork', okNet({ IPv4Data: [{ AddressSpace: 'vxnet-local', Pool: '10.1.0.0/99' }] }), /invalid IPv4 pool "10.1.0.0\/99"/],
  ['a gateway outside the pool', '/NetworkDriver.CreateNetwork', okNet({ IPv4Data: [{ AddressSpace: 'vxnet-local', Pool: '10.1.0.0/24', Gateway: '10.9.0.1/24' }] }), /gateway "10.9.0.1\/24" is not an address/],
  ['two IPv4 subnets', '/NetworkDriver.CreateNetwork', okNet({ IPv4Data: [{ AddressSpace: 'x', Pool: '10.1.0.0/24' }, { AddressSpace: 'x', Pool: '10.2.0.0/24' }] }), /at most one IPv4/],
  ['no subnet at all', '/NetworkDriver.CreateNetwork', okNet({ IPv4Data: [] }), /has no subnet/],
  ['an MTU that is not a number', '/NetworkDriver.CreateNetwork', okNet({ Options: { 'com.docker.network.generic': { 'com.docker.network.driver.mtu': 'big' } } }), /driver.mtu="big" is not a whole number/],
  ['an enable_ip_masquerade that is not a boolean', '/NetworkDriver.CreateNetwork', okNet({ Options: { 'com.docker.network.generic': { 'com.docker.network.bridge.enable_ip_masquerade': 'no' } } }), /enable_ip_masquerade="no" must be true or false/],
  ['an MTU above the underlay allows', '/NetworkDriver.CreateNetwork', okNet({ Options: { 'com.docker.network.generic': { 'com.docker.network.driver.mtu': '9000' } } }), /outside 576..1450/],
  ['a VNI of 0', '/NetworkDriver.CreateNetwork', okNet({ Options: { 'com.docker.network.generic': { 'vxnet.vni': '0' } } }), /vxnet.vni=0 is outside/],
  ['an unknown vxnet option', '/NetworkDriver.CreateNetwork', okNet({ Options: { 'com.docker.network.generic': { 'vxnet.vnii': '5' } } }), /unknown option vxnet.vnii/],
  ['a bad logical network name', '/NetworkDriver.CreateNetwork', okNet({ Options: { 'com.docker.network.generic': { 'vxnet.network': '../x' } } }), /vxnet.network="..\/x"/],
  ['internal not a boolean', '/NetworkDriver.CreateNetwork', okNet({ Options: { 'com.docker.network.internal': 'yes' } }), /internal must be true or false/],
  ['an unknown network', '/NetworkDriver.CreateEndpoint', ep({ NetworkID: 'f'.repeat(64) }), /unknown network f{64}/],
  ['an address outside the network', '/NetworkDriver.CreateEndpoint', ep({ Interface: { Address: '10.9.0.5/24', AddressIPv6: '', MacAddress: '' } }), /10.9.0.5\/24 is not in a subnet/],
  ['an invalid address', '/NetworkDriver.CreateEndpoint', ep({ Interface: { Address: '10.1.0.500/24', AddressIPv6: '', MacAddress: '' } }), /invalid IPv4 address "10.1.0.500\/24"/],
  ['an invalid MAC', '/NetworkDriver.CreateEndpoint', ep({ Interface: { Address: '10.1.0.50/24', AddressIPv6: '', MacAddress: 'zz:11:22:33:44:55' } }), /invalid MAC address "zz:11:22:33:44:55"/],
  ['a multicast MAC', '/NetworkDriver.CreateEndpoint', ep({ Interface: { Address: '10.1.0.50/24', AddressIPv6: '', MacAddress: '01:00:5e:00:00:01' } }), /multicast/],
  ['an existing endpoint with other settings', '/NetworkDriver.CreateEndpoint', ep({ EndpointID: EP_ID, Interface: { Address: '10.1.0.77/24', AddressIPv6: '', MacAddress: '' } }), /already exists with other settings/],
  ['an unknown endpoint', '/NetworkDriver.Join', { NetworkID: NET_ID, EndpointID: '6'.repeat(64), SandboxKey: '/x' }, /unknown endpoint 6{64}/],
  ['an unknown endpoint', '/NetworkDriver.Leave', { NetworkID: NET_ID, EndpointID: '6'.repeat(64) }, /unknown endpoint/],
  ['an unknown endpoint', '/NetworkDriver.EndpointOperInfo', { NetworkID: NET_ID, EndpointID: '6'.repeat(64) }, /unknown endpoint/],
  ['a pool in an unknown space', '/IpamDriver.RequestPool', { AddressSpace: 'other', Pool: '10.5.0.0/24', SubPool: '', V6: false }, /unknown address space "other"/],
  ['V6 of the wrong type', '/IpamDriver.RequestPool', { AddressSpace: 'vxnet-local', Pool: '10.5.0.0/24', V6: 'no' }, /V6 must be boolean/],
  ['an overlapping subnet', '/IpamDriver.RequestPool', { AddressSpace: 'vxnet-local', Pool: '10.1.0.0/16', SubPool: '', V6: false }, /overlaps subnet 10.1.0.0\/24/],
  ['an unknown pool', '/IpamDriver.RequestAddress', { PoolID: 'vxnet-local/10.77.0.0/24', Address: '', Options: null }, /unknown pool vxnet-local\/10.77.0.0\/24/],
  ['a malformed PoolID', '/IpamDriver.RequestAddress', { PoolID: '../../x', Address: '' }, /invalid PoolID/],
  ['an address in use', '/IpamDriver.RequestAddress', { PoolID: POOL, Address: '10.1.0.2', Options: null }, /10.1.0.2 is already in use/],
  ['the broadcast address', '/IpamDriver.RequestAddress', { PoolID: POOL, Address: '10.1.0.255', Options: null }, /not a usable address/],
  ['an invalid address', '/IpamDriver.RequestAddress', { PoolID: POOL, Address: 'ten', Options: null }, /invalid IP address "ten"/],
  ['Options of the wrong type', '/IpamDriver.RequestAddress', { PoolID: POOL, Address: '', Options: [1] }, /Options/],
  ['an invalid address', '/IpamDriver.ReleaseAddress', { PoolID: POOL, Address: '1.2.3' }, /invalid IP address "1.2.3"/],
  ['a huge string', '/IpamDriver.RequestPool', { AddressSpace: 'x'.repeat(5000), Pool: '' }, /AddressSpace must NOT have more than 4096 characters/],
];

describe('src/server/schemas.ts (bad input)', () => {
  let store: Store;
  let dp: RecordingDataplane;
  let p: PluginApp;
  let net: CreatedNetwork;
  beforeAll(async () => {
    store = tmpEmbeddedStore();
    dp = recordingDataplane();
    p = pluginApp(store, dp);
    net = await createNetwork(p, { subnet: '10.1.0.0/24' });
    await runContainer(p, net, EP_ID, '10.1.0.2');
  });
  afterAll(async () => {
    await p.app.close();
    await store.close();
  });

  async function snapshot(): Promise<string> {
    return JSON.stringify([await store.list('/'), await store.revision(), dp.calls.length, [...dp.links.keys()]]);
  }

  it.each(CASES)('rejects %s on %s', async (_what, path, body, msg) => {
    const before = await snapshot();
    const r = await p.call(path, body);
    expect(r.status).toBe(500);
    expect(r.body.Err).toMatch(msg);
    expect(r.body.Error).toBe(r.body.Err);
    expect(await snapshot()).toBe(before);
  });

  it('rejects a body over the size limit', async () => {
    const r = await p.call('/NetworkDriver.CreateNetwork', okNet({ pad: 'x'.repeat(300 * 1024) }));
    expect(r.status).toBe(500);
    expect(r.body.Err).toMatch(/larger than/);
  });

  it('lets fields it does not know through (dockerd adds fields over time)', async () => {
    const r = await p.call('/NetworkDriver.EndpointOperInfo', { NetworkID: NET_ID, EndpointID: EP_ID, SomethingNew: [1, 2] });
    expect(r.status).toBe(200);
  });
});

/** Small deterministic PRNG (mulberry32): a failing seed can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PATHS = [
  'NetworkDriver.CreateNetwork', 'NetworkDriver.DeleteNetwork', 'NetworkDriver.CreateEndpoint', 'NetworkDriver.DeleteEndpoint',
  'NetworkDriver.Join', 'NetworkDriver.Leave', 'NetworkDriver.EndpointOperInfo', 'NetworkDriver.ProgramExternalConnectivity',
  'NetworkDriver.RevokeExternalConnectivity', 'NetworkDriver.AllocateNetwork', 'NetworkDriver.FreeNetwork',
  'NetworkDriver.DiscoverNew', 'NetworkDriver.DiscoverDelete', 'IpamDriver.RequestPool', 'IpamDriver.ReleasePool',
  'IpamDriver.RequestAddress', 'IpamDriver.ReleaseAddress',
].map((x) => `/${x}`);

const ATOMS: unknown[] = [
  null, true, false, 0, -1, 1.5, 1e308, '', ' ', 'a', '../..', '/etc/passwd', 'é🙂\u0000', 'x'.repeat(5000), NET_ID, EP_ID,
  '10.1.0.0/24', '10.1.0.3', '10.1.0.0/33', '::1', 'fd00::/64', '02:42:0a:01:00:05', 'zz:zz', 'vxnet-local', POOL,
  'vxnet-local/10.1.0.0/24', { 'com.docker.network.gateway': 'x' }, [], {}, [[[]]], { RequestAddressType: 'com.docker.network.gateway' },
];
const FIELDS = ['NetworkID', 'EndpointID', 'Options', 'IPv4Data', 'IPv6Data', 'Interface', 'SandboxKey', 'AddressSpace', 'Pool',
  'SubPool', 'V6', 'PoolID', 'Address', 'DiscoveryType', 'DiscoveryData', 'AddressIPv6', 'MacAddress', 'Gateway'];

function randomValue(r: () => number, depth = 0): unknown {
  const roll = r();
  if (depth < 2 && roll < 0.2) {
    const o: Record<string, unknown> = {};
    const n = Math.floor(r() * 5);
    for (let i = 0; i < n; i++) o[FIELDS[Math.floor(r() * FIELDS.length)]] = randomValue(r, depth + 1);
    return o;
  }
  if (depth < 2 && roll < 0.3) return Array.from({ length: Math.floor(r() * 3) }, () => randomValue(r, depth + 1));
  return ATOMS[Math.floor(r() * ATOMS.length)];
}

function randomBody(r: () => number): unknown {
  const kind = r();
  if (kind < 0.1) return JSON.stringify(randomValue(r)).slice(0, Math.floor(r() * 40)); // truncated JSON
  if (kind < 0.15) return String.fromCharCode(...Array.from({ length: 30 }, () => Math.floor(r() * 256)));
  const o: Record<string, unknown> = {};
  for (const f of FIELDS) if (r() < 0.4) o[f] = randomValue(r);
  return o;
}

describe('fuzz: random bodies on every endpoint', () => {
  const ROUNDS = 3000;
  it(`answers ${ROUNDS} random requests with 200 or a 500 carrying Err/Error, changing nothing when it refuses`, async () => {
    const store = tmpEmbeddedStore();
    const dp = recordingDataplane();
    const p = pluginApp(store, dp);
    const net = await createNetwork(p, { subnet: '10.1.0.0/24' });
    await runContainer(p, net, EP_ID, '10.1.0.2');
    const r = rng(20261123);
    let refused = 0;
    for (let i = 0; i < ROUNDS; i++) {
      const path = PATHS[Math.floor(r() * PATHS.length)];
      const body = randomBody(r);
      const before = JSON.stringify([await store.list('/'), dp.calls.length]);
      const res = await p.call(path, body);
      if (res.status === 200) continue;
      refused++;
      expect({ i, path, status: res.status }).toEqual({ i, path, status: 500 });
      expect(typeof res.body.Err).toBe('string');
      expect(res.body.Error).toBe(res.body.Err);
      expect(JSON.stringify([await store.list('/'), dp.calls.length])).toBe(before);
    }
    expect(refused).toBeGreaterThan(ROUNDS / 2);
    await p.app.close();
    await store.close();
  }, 120_000);
});
