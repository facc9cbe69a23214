// `vxnet status` gathering over the embedded store, with two hosts' records written through the
// plugin protocol as their dockerds would.
import { gatherStatus, StatusDeps } from '../../../src/network/status';
import { ReconcileHistory } from '../../../src/network/reconcile-history';
import type { ReconcilePlan } from '../../../src/network/reconcile';
import type { ProgrammedPeers } from '../../../src/network/peers';
import { recordingDataplane } from '../../helpers/recording-dataplane';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';
import { pluginApp, PluginApp, TEST_KEYS, NET_ID, NET_ID2, EP_ID, EP_ID2 } from '../../helpers/plugin-app';
import { createNetwork, runContainer } from '../../helpers/docker-flow';
import type { Store } from '../../../src/store/types';

const keys = TEST_KEYS;
const EP_ID3 = 'aef52212'.padEnd(64, 'e');
const NET_ID3 = '0612723f'.padEnd(64, 'f');
const SINCE = Date.UTC(2025, 0, 2, 3, 4, 5);

function plan(changes: Partial<ReconcilePlan> = {}): ReconcilePlan {
  return { dockerdAnswered: true, staleNetworks: [], staleEndpoints: [], firewall: [], antispoof: [], repairNetworks: [], stalePorts: [], repairPorts: [], orphanPortRules: [], orphanLinks: [], orphanRules: [], orphanAddresses: [], policy: [], ...changes };
}

describe('src/network/status.ts', () => {
  let store: Store;
  let h1: PluginApp;
  let h2: PluginApp;
  let peers: ProgrammedPeers[];
  let history: ReconcileHistory;
  let clock: number;

  beforeEach(async () => {
    store = tmpEmbeddedStore();
    peers = [{ lnet: 'subnet-10.5.0.0-24', vni: 256, fdb: 2, neigh: 1, vteps: 1 }];
    clock = SINCE;
    history = new ReconcileHistory(async () => plan({ staleEndpoints: ['8ef52212cccc (10.5.0.9/24)'] }), undefined, () => clock);
    const status = (): Promise<unknown> => gatherStatus(deps());
    h1 = pluginApp(store, recordingDataplane(), { host: 'h1', extras: { status } });
    h2 = pluginApp(store, recordingDataplane(), { host: 'h2' });
    // One network on both hosts (2 containers on h1, 1 on h2), one internal network only on h1.
    const n1 = await createNetwork(h1, { networkId: NET_ID, subnet: '10.5.0.0/24' });
    const n2 = await createNetwork(h2, { networkId: NET_ID2, subnet: '10.5.0.0/24' });
    await createNetwork(h1, { networkId: NET_ID3, subnet: '10.6.0.0/24', internal: true, generic: { 'vxnet.network': 'backend' } });
    await runContainer(h1, n1, EP_ID);
    await runContainer(h1, n1, EP_ID3);
    await runContainer(h2, n2, EP_ID2);
    // h1 holds its lease; h2 lost it and a live host started its dead-host clock.
    await store.createIfAbsent(keys.host('h1'), JSON.stringify({ vtep: '172.31.0.1', version: 't' }));
    await store.createIfAbsent(keys.deadHost('h2'), JSON.stringify({ since: SINCE }));
  });
  afterEach(async () => {
    await h1.app.close();
    await h2.app.close();
    await store.close();
  });

  function deps(over: Partial<StatusDeps> = {}): StatusDeps {
    return {
      store,
      keys,
      self: { host: 'h1', vtep: '172.31.0.1', store: 'etcd', version: '0.1.0' },
      registered: true,
      peers: { programmed: () => peers },
      lastReconcile: () => history.last(),
      ...over,
    };
  }

  it('reports hosts with their lease, networks with endpoints per host, peers and the last reconcile', async () => {
    await history.runner('startup')(false);
    const s = await gatherStatus(deps());
    expect(s.self).toEqual({ host: 'h1', vtep: '172.31.0.1', store: 'etcd', version: '0.1.0' });
    expect(s.hosts).toEqual([
      { host: 'h1', vtep: '172.31.0.1', lease: 'alive', deadSince: null, releaseClaimedBy: null, endpoints: 2 },
      { host: 'h2', vtep: null, lease: 'gone', deadSince: '2025-01-02T03:04:05.000Z', releaseClaimedBy: null, endpoints: 1 },
    ]);
    expect(s.networks).toEqual([
      { network: 'backend', vni: 257, subnets: ['10.6.0.0/24'], mtu: 1450, internal: true, endpoints: { h1: 0 } },
      { network: 'subnet-10.5.0.0-24', vni: 256, subnets: ['10.5.0.0/24'], mtu: 1450, internal: false, endpoints: { h1: 2, h2: 1 } },
    ]);
    expect(s.peers).toEqual(peers);
    expect(s.lastReconcile).toEqual({ at: '2025-01-02T03:04:05.000Z', trigger: 'startup', plan: plan({ staleEndpoints: ['8ef52212cccc (10.5.0.9/24)'] }), error: null });
  });

  it('shows a host that runs alone without a lease, and no peers', async () => {
    const s = await gatherStatus(deps({ self: { host: 'h1', vtep: null, store: 'embedded', version: '0.1.0' }, registered: false, peers: null }));
    await store.delete(keys.host('h1'));
    const alone = await gatherStatus(deps({ self: { host: 'h1', vtep: null, store: 'embedded', version: '0.1.0' }, registered: false, peers: null }));
    expect(s.hosts[0]).toMatchObject({ host: 'h1', lease: 'alive', vtep: null });
    expect(alone.hosts[0]).toMatchObject({ host: 'h1', lease: 'none' });
    expect(alone.peers).toBeNull();
    expect(alone.lastReconcile).toBeNull();
  });

  it('takes a host\'s VTEP from its newest endpoint when its lease is gone, and names who releases it', async () => {
    const ep = (await store.list(keys.endpoints())).find((kv) => kv.key.endsWith(EP_ID2));
    await store.compareAndSwap(ep!.key, JSON.stringify({ ...JSON.parse(ep!.value), vtep: '172.31.0.2' }), ep!.modRevision);
    const marker = await store.get(keys.deadHost('h2'));
    await store.compareAndSwap(keys.deadHost('h2'), JSON.stringify({ since: SINCE, claimedBy: 'h1', claimedAt: SINCE + 1 }), marker!.modRevision);
    const h2 = (await gatherStatus(deps())).hosts.find((h) => h.host === 'h2');
    expect(h2).toMatchObject({ vtep: '172.31.0.2', lease: 'gone', releaseClaimedBy: 'h1' });
  });

  it('is served on POST /Vxnet.Status, and refused where the daemon wired none', async () => {
    const r = await h1.call('/Vxnet.Status');
    expect(r.status).toBe(200);
    expect(r.body.Status).toEqual(JSON.parse(JSON.stringify(await gatherStatus(deps()))));
    const none = await h2.call('/Vxnet.Status');
    expect(none).toEqual({ status: 500, body: { Err: 'status is not available', Error: 'status is not available' } });
  });
});

describe('src/network/reconcile-history.ts', () => {
  it('remembers real passes under their trigger, not dry runs, and tells the observer', async () => {
    const seen: Array<ReconcilePlan | null> = [];
    let fail = false;
    const h = new ReconcileHistory(
      async (dryRun) => {
        if (fail) throw new Error('dockerd exploded');
        return plan({ orphanLinks: dryRun ? ['dry'] : ['vxe-1'] });
      },
      (p) => seen.push(p),
      () => 0,
    );
    expect(await h.runner('on-demand')(true)).toEqual(plan({ orphanLinks: ['dry'] }));
    expect(h.last()).toBeNull();
    await h.runner('on-demand')(false);
    expect(h.last()).toEqual({ at: '1970-01-01T00:00:00.000Z', trigger: 'on-demand', plan: plan({ orphanLinks: ['vxe-1'] }), error: null });
    fail = true;
    await expect(h.runner('startup')(false)).rejects.toThrow('dockerd exploded');
    expect(h.last()).toEqual({ at: '1970-01-01T00:00:00.000Z', trigger: 'startup', plan: null, error: 'dockerd exploded' });
    expect(seen).toEqual([plan({ orphanLinks: ['vxe-1'] }), null]);
  });
});
