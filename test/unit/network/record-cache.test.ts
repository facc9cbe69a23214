// The driver with its in-memory records (network/record-cache.ts), two hosts on one store:
// plugin calls read no record from the store once cached, and a record another host removes
// from the store is not served from memory afterwards.
import { pluginApp, EP_ID, EP_ID2, NET_ID, PluginApp } from '../../helpers/plugin-app';
import { recordingDataplane } from '../../helpers/recording-dataplane';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';
import { createNetwork, runContainer, stopContainer, removeNetwork, ok, CreatedNetwork } from '../../helpers/docker-flow';
import { eventually } from '../../helpers/eventually';
import { RecordCache } from '../../../src/network/record-cache';
import { timedStore, StoreOp } from '../../../src/store/timed';
import { TEST_KEYS } from '../../helpers/plugin-app';
import { createLogger } from '../../../src/log';
import type { EmbeddedStore } from '../../../src/store/embedded';
import type { Store } from '../../../src/store/types';

const silent = createLogger('silent');

interface Host {
  p: PluginApp;
  records: RecordCache;
  reads: StoreOp[];
}

async function hostOn(raw: Store, name: string, opts: { teardownDelayMs?: number; deferNetworkDelete?: boolean } = {}): Promise<Host & { dp: ReturnType<typeof recordingDataplane> }> {
  const reads: StoreOp[] = [];
  // Counts the reads each plugin call makes (not their time).
  const store = timedStore(raw, (op) => {
    if (op === 'get' || op === 'list') reads.push(op);
  });
  const records = new RecordCache({ store, keys: TEST_KEYS, host: name, log: silent });
  await records.start();
  const dp = recordingDataplane();
  const p = pluginApp(store, dp, { host: name, records, ...opts });
  return { p, records, reads, dp };
}

describe('record cache in the driver', () => {
  let store: EmbeddedStore;
  const open: Host[] = [];

  beforeEach(() => {
    store = tmpEmbeddedStore();
  });
  afterEach(async () => {
    for (const h of open.splice(0)) {
      await h.p.app.close();
      h.records.close();
    }
    await store.close();
  });

  it('Join, EndpointOperInfo, Leave and DeleteEndpoint read nothing from the store', async () => {
    const a = await hostOn(store, 'h-a', { teardownDelayMs: 5000 });
    open.push(a);
    const net = await createNetwork(a.p, { subnet: '10.70.0.0/24' });
    const c = await runContainer(a.p, net, EP_ID);
    const ids = { NetworkID: net.networkId, EndpointID: c.endpointId };
    a.reads.length = 0;
    await ok(a.p, '/NetworkDriver.Join', { ...ids, SandboxKey: '/x', Options: {} });
    const info = await ok(a.p, '/NetworkDriver.EndpointOperInfo', ids);
    expect(info.Value).toMatchObject({ 'vxnet.host': 'h-a', 'vxnet.mac': c.mac });
    await ok(a.p, '/NetworkDriver.Leave', ids);
    await ok(a.p, '/NetworkDriver.DeleteEndpoint', ids);
    expect(a.reads).toEqual([]);
    // The record is gone from the store and from memory: a second EndpointOperInfo is refused.
    expect((await a.p.call('/NetworkDriver.EndpointOperInfo', ids)).status).toBe(500);
    expect((await store.list(TEST_KEYS.endpoints())).map((kv) => kv.key)).toEqual([]);
    a.p.driver.close();
  });

  it('an endpoint another host removes from the store is not served from memory', async () => {
    const a = await hostOn(store, 'h-a');
    const b = await hostOn(store, 'h-b');
    open.push(a, b);
    const netA = await createNetwork(a.p, { subnet: '10.71.0.0/24' });
    const c = await runContainer(a.p, netA, EP_ID);
    const ids = { NetworkID: netA.networkId, EndpointID: c.endpointId };
    expect((await a.p.call('/NetworkDriver.EndpointOperInfo', ids)).status).toBe(200);
    // Host b decides that host a is dead for good (dead-hosts.ts) and forgets its records.
    const forgotten = await b.p.driver.forgetHost('h-a');
    expect(forgotten).toHaveLength(1);
    await eventually('host a sees its endpoint gone', async () => (await a.p.call('/NetworkDriver.EndpointOperInfo', ids)).status === 500, 5000);
    const r = await a.p.call('/NetworkDriver.Join', { ...ids, SandboxKey: '/x', Options: {} });
    expect(r.status).toBe(500);
    expect(String(r.body.Err)).toMatch(/unknown (endpoint|network)/);
  });

  it('finds the local endpoint holding an address in any spelling, not another host\'s, not a removed one', async () => {
    const records = new RecordCache({ store, keys: TEST_KEYS, host: 'h-a', log: silent });
    await records.start();
    try {
      const ep = (host: string, ipv4: string, ipv6: string | null) => JSON.stringify({ networkId: 'd1', host, vtep: null, mac: '02:00:00:00:00:01', ipv4, ipv6 });
      await store.createIfAbsent(TEST_KEYS.endpoint('n1', 'e1'), ep('h-a', '10.9.0.5/24', 'fd00:0:0::5/64'));
      await store.createIfAbsent(TEST_KEYS.endpoint('n1', 'e2'), ep('h-b', '10.9.0.5/24', null));
      records.wrote(TEST_KEYS.endpoint('n1', 'e3'), ep('h-a', '10.9.0.6/24', null));
      await eventually('records seen', () => (records.localHolders('10.9.0.5') ?? []).length === 1, 2000);
      expect(records.localHolders('10.9.0.5')?.map((e) => e.key)).toEqual([TEST_KEYS.endpoint('n1', 'e1')]);
      expect(records.localHolders('fd00::5')?.map((e) => e.key)).toEqual([TEST_KEYS.endpoint('n1', 'e1')]);
      expect(records.localHolders('10.9.0.6')?.map((e) => e.key)).toEqual([TEST_KEYS.endpoint('n1', 'e3')]);
      records.removed(TEST_KEYS.endpoint('n1', 'e3'), false);
      expect(records.localHolders('10.9.0.6')).toEqual([]);
    } finally {
      records.close();
    }
  });

  it('keeps its index of addresses in step when a record changes its address and after a reload', async () => {
    const records = new RecordCache({ store, keys: TEST_KEYS, host: 'h-a', log: silent });
    await records.start();
    try {
      const ep = (ipv4: string) => JSON.stringify({ networkId: 'd1', host: 'h-a', vtep: null, mac: '02:00:00:00:00:01', ipv4, ipv6: null });
      const key = TEST_KEYS.endpoint('n1', 'e1');
      await store.createIfAbsent(key, ep('10.9.0.5/24'));
      await eventually('record seen', () => (records.localHolders('10.9.0.5') ?? []).length === 1, 2000);
      const [kv] = await store.list(key);
      await store.compareAndSwap(key, ep('10.9.0.7/24'), kv.modRevision);
      await eventually('moved', () => (records.localHolders('10.9.0.7') ?? []).length === 1, 2000);
      expect(records.localHolders('10.9.0.5')).toEqual([]);
      // A second cache started over the same records (a restart) finds it from its first list.
      const again = new RecordCache({ store, keys: TEST_KEYS, host: 'h-a', log: silent });
      await again.start();
      expect(again.localHolders('10.9.0.7')?.map((e) => e.key)).toEqual([key]);
      again.close();
      expect(again.localHolders('10.9.0.7')).toBeNull();
      await store.delete(key);
      await eventually('gone', () => (records.localHolders('10.9.0.7') ?? [1]).length === 0, 2000);
    } finally {
      records.close();
    }
  });

  it('a network created on another host is read through, then served from memory', async () => {
    const a = await hostOn(store, 'h-a');
    const b = await hostOn(store, 'h-b');
    open.push(a, b);
    const netA = await createNetwork(a.p, { subnet: '10.72.0.0/24' });
    // Host b joins the same logical network with its own NetworkID.
    const netB: CreatedNetwork = await createNetwork(b.p, { subnet: '10.72.0.0/24', networkId: NET_ID.replace(/^0/, '1') });
    const cb = await runContainer(b.p, netB, EP_ID2);
    const ca = await runContainer(a.p, netA, EP_ID);
    expect(ca.address).not.toBe(cb.address);
    b.reads.length = 0;
    await ok(b.p, '/NetworkDriver.EndpointOperInfo', { NetworkID: netB.networkId, EndpointID: cb.endpointId });
    expect(b.reads).toEqual([]);
    await stopContainer(a.p, netA, ca);
    await stopContainer(b.p, netB, cb);
    await removeNetwork(a.p, netA);
    await removeNetwork(b.p, netB);
    expect(await store.list('/')).toEqual([]);
  });

  it('swarm scope: a DeleteNetwork followed by CreateNetwork of the same network keeps records and bridge', async () => {
    const a = await hostOn(store, 'h-a', { teardownDelayMs: 200, deferNetworkDelete: true });
    open.push(a);
    const net = await createNetwork(a.p, { subnet: '10.73.0.0/24' });
    const c = await runContainer(a.p, net, EP_ID);
    await stopContainer(a.p, net, c);
    await removeNetwork(a.p, net);
    // dockerd makes it again for the next container, within the delay.
    const again = await createNetwork(a.p, { subnet: '10.73.0.0/24' });
    const c2 = await runContainer(a.p, again, EP_ID2);
    await new Promise((r) => setTimeout(r, 400)); // past the delay: the delete must not run now
    expect(a.dp.calls.filter((x) => x.startsWith('removeBridge'))).toEqual([]);
    expect((await a.p.call('/NetworkDriver.EndpointOperInfo', { NetworkID: again.networkId, EndpointID: c2.endpointId })).status).toBe(200);
    expect(await store.get(TEST_KEYS.dockerNetwork('h-a', again.networkId))).not.toBeNull();
    // The last container and the network go: after the delay records and devices go too.
    await stopContainer(a.p, again, c2);
    await removeNetwork(a.p, again);
    expect(await store.get(TEST_KEYS.dockerNetwork('h-a', again.networkId))).not.toBeNull();
    await eventually('deferred delete done', async () => (await store.list('/')).length === 0, 5000);
    expect(a.dp.calls.filter((x) => x.startsWith('removeBridge '))).toHaveLength(1);
  });
});
