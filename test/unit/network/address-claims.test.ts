// Addresses of live endpoints survive late releases, and CreateEndpoint holds its address
// (network/address-claims.ts): the orders crash churn produced against a real dockerd, replayed
// here call by call over the embedded store.
import { createLogger } from '../../../src/log';
import { reconcile } from '../../../src/network/reconcile';
import type { Store } from '../../../src/store/types';
import { recordingDataplane, RecordingDataplane } from '../../helpers/recording-dataplane';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';
import { pluginApp, PluginApp, TEST_KEYS as keys, NET_ID, EP_ID, EP_ID2 } from '../../helpers/plugin-app';
import { createNetwork, runContainer, stopContainer, CreatedNetwork } from '../../helpers/docker-flow';

const POOL = 'vxnet-local/10.1.0.0/24';
const addressKey = (ip: string): string => keys.address('vxnet-local', '10.1.0.0/24', ip);

describe('src/network/address-claims.ts', () => {
  let store: Store;
  let dp: RecordingDataplane;
  let p: PluginApp;
  let net: CreatedNetwork;
  beforeEach(async () => {
    store = tmpEmbeddedStore();
    dp = recordingDataplane();
    p = pluginApp(store, dp);
    net = await createNetwork(p, { subnet: '10.1.0.0/24' });
  });
  afterEach(async () => {
    await p.app.close();
    await store.close();
  });

  const createEndpoint = (endpointId: string, address: string) =>
    p.call('/NetworkDriver.CreateEndpoint', { NetworkID: NET_ID, EndpointID: endpointId, Interface: { Address: address, AddressIPv6: '', MacAddress: '' }, Options: {} });

  it('answers a late ReleaseAddress of a live endpoint\'s address with OK and keeps the address', async () => {
    const c = await runContainer(p, net, EP_ID);
    const ip = c.address.split('/')[0];
    const late = await p.call('/IpamDriver.ReleaseAddress', { PoolID: POOL, Address: ip });
    expect(late.status).toBe(200);
    expect(await store.get(addressKey(ip))).not.toBeNull();
    expect(p.logs.some((l) => l.msg === 'ReleaseAddress of an address a live endpoint holds: kept' && l.endpoint === EP_ID)).toBe(true);
    // The container's own stop releases it: its endpoint is gone first.
    await stopContainer(p, net, c);
    expect(await store.get(addressKey(ip))).toBeNull();
  });

  it('CreateEndpoint takes its address back when a release freed it in between', async () => {
    const r = await p.call('/IpamDriver.RequestAddress', { PoolID: POOL, Address: '', Options: null });
    const address = r.body.Address as string;
    const ip = address.split('/')[0];
    await p.call('/IpamDriver.ReleaseAddress', { PoolID: POOL, Address: ip }); // e.g. reconcile's orphan release
    expect(await store.get(addressKey(ip))).toBeNull();
    expect((await createEndpoint(EP_ID, address)).status).toBe(200);
    const rec = await store.get(addressKey(ip));
    expect(JSON.parse(rec?.value ?? 'null')).toMatchObject({ kind: 'container', host: 'h1' });
    expect(p.logs.some((l) => l.msg === 'address record was missing at CreateEndpoint: taken again')).toBe(true);
    // Taken again means a new RequestAddress does not hand it out.
    const next = await p.call('/IpamDriver.RequestAddress', { PoolID: POOL, Address: '', Options: null });
    expect(next.body.Address).not.toBe(address);
  });

  it('CreateEndpoint refuses an address another endpoint on the network holds, and writes nothing', async () => {
    const c = await runContainer(p, net, EP_ID);
    const before = JSON.stringify(await store.list('/'));
    const r = await createEndpoint(EP_ID2, c.address);
    expect(r.status).toBe(500);
    expect(String(r.body.Err)).toContain(`address ${c.address.split('/')[0]} is held by endpoint ${EP_ID}`);
    expect(JSON.stringify(await store.list('/'))).toBe(before);
  });

  it('a retried CreateEndpoint of the same endpoint is not refused by its own record', async () => {
    const c = await runContainer(p, net, EP_ID);
    expect((await createEndpoint(EP_ID, c.address)).status).toBe(200);
  });

  it('reconcile does not release an address whose CreateEndpoint landed after the pass read the endpoints', async () => {
    const r = await p.call('/IpamDriver.RequestAddress', { PoolID: POOL, Address: '', Options: null });
    const address = r.body.Address as string;
    const ip = address.split('/')[0];
    // The endpoints are read at the start of the pass; the CreateEndpoint dockerd was retrying
    // arrives while the pass walks the addresses.
    const ipam = {
      boundPools: () => p.ipam.boundPools(),
      addressesOf: async (poolId: string) => {
        const list = await p.ipam.addressesOf(poolId);
        expect((await createEndpoint(EP_ID, address)).status).toBe(200);
        return list;
      },
      releaseAddress: (poolId: string, a: string) => p.ipam.releaseAddress(poolId, a),
    };
    const docker = { view: async () => ({ networks: new Set([NET_ID]), endpoints: new Set<string>() }) };
    const plan = await reconcile(
      { driver: p.driver, ipam, dataplane: dp, docker, host: 'h1', log: createLogger('silent'), now: () => Date.now() + 120_000 },
      { dryRun: false },
    );
    expect(plan.orphanAddresses).toEqual([]);
    expect(await store.get(addressKey(ip))).not.toBeNull();
    expect(await store.get(keys.endpoint('subnet-10.1.0.0-24', EP_ID))).not.toBeNull();
  });
});
