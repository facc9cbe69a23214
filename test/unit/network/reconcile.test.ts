// Reconcile's decisions over the embedded store, with dockerd's answer given by the test.
import { DOCKERD_RETRY_WINDOW_MS, reconcile } from '../../../src/network/reconcile';
import type { DockerClient, DockerView } from '../../../src/docker/docker-view';
import type { Ipam } from '../../../src/ipam/ipam';
import type { NetworkDriver } from '../../../src/network/network-driver';
import { createLogger } from '../../../src/log';
import { recordingDataplane, RecordingDataplane } from '../../helpers/recording-dataplane';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';
import { pluginApp, PluginApp, testDomain, TEST_KEYS, NET_ID, NET_ID2, EP_ID, EP_ID2 } from '../../helpers/plugin-app';
import { createNetwork, runContainer } from '../../helpers/docker-flow';
import type { Store } from '../../../src/store/types';

const keys = TEST_KEYS;
const log = createLogger('silent');

describe('src/network/reconcile.ts', () => {
  let store: Store;
  let dp: RecordingDataplane;
  let p: PluginApp;
  let ipam: Ipam;
  let driver: NetworkDriver;
  beforeEach(() => {
    store = tmpEmbeddedStore();
    dp = recordingDataplane();
    p = pluginApp(store, dp);
    ({ ipam, driver } = testDomain(store, dp));
  });
  afterEach(async () => {
    await p.app.close();
    await store.close();
  });

  const dockerSays = (view: DockerView | null): DockerClient => ({ view: async () => view });
  const run = (docker: DockerClient | null, dryRun = false, now = Date.now() + 120_000) =>
    reconcile({ driver, ipam, dataplane: dp, docker, host: 'h1', log, now: () => now }, { dryRun });

  it('changes nothing when dockerd agrees with the store', async () => {
    await createNetwork(p, { subnet: '10.1.0.0/24' });
    await runContainer(p, { networkId: NET_ID, poolId: 'vxnet-local/10.1.0.0/24', gateway: '10.1.0.1/24' }, EP_ID);
    const before = JSON.stringify(await store.list('/'));
    const plan = await run(dockerSays({ networks: new Set([NET_ID]), endpoints: new Set([EP_ID]) }));
    expect(plan).toMatchObject({ dockerdAnswered: true, staleNetworks: [], staleEndpoints: [], orphanLinks: [], orphanAddresses: [] });
    expect(JSON.stringify(await store.list('/'))).toBe(before);
  });

  it('deletes nothing on dockerd\'s account when dockerd does not answer', async () => {
    const net = await createNetwork(p, { subnet: '10.1.0.0/24' });
    await runContainer(p, net, EP_ID);
    const before = JSON.stringify(await store.list('/'));
    const plan = await run(dockerSays(null));
    expect(plan.dockerdAnswered).toBe(false);
    expect(plan.staleEndpoints).toEqual([]);
    expect(JSON.stringify(await store.list('/'))).toBe(before);
  });

  it('drops an endpoint whose container is gone and frees its address; a dry run only reports it', async () => {
    const net = await createNetwork(p, { subnet: '10.1.0.0/24' });
    await runContainer(p, net, EP_ID);
    const gone = await runContainer(p, net, EP_ID2);
    const view = dockerSays({ networks: new Set([NET_ID]), endpoints: new Set([EP_ID]) });
    const dry = await run(view, true);
    expect(dry.staleEndpoints).toEqual([expect.stringContaining(gone.address)]);
    expect(await store.get(keys.address('vxnet-local', '10.1.0.0/24', gone.address.split('/')[0]))).not.toBeNull();
    await run(view);
    expect(await store.get(keys.address('vxnet-local', '10.1.0.0/24', gone.address.split('/')[0]))).toBeNull();
    expect(await store.get(keys.endpoint('subnet-10.1.0.0-24', EP_ID2))).toBeNull();
    expect(await store.get(keys.endpoint('subnet-10.1.0.0-24', EP_ID))).not.toBeNull();
  });

  it('leaves young endpoints and addresses alone (a docker run may be in progress)', async () => {
    const net = await createNetwork(p, { subnet: '10.1.0.0/24' });
    await runContainer(p, net, EP_ID);
    await p.call('/IpamDriver.RequestAddress', { PoolID: net.poolId, Address: '', Options: null });
    const plan = await run(dockerSays({ networks: new Set([NET_ID]), endpoints: new Set() }), false, Date.now());
    expect(plan.staleEndpoints).toEqual([]);
    expect(plan.orphanAddresses).toEqual([]);
  });

  it('frees a container address no endpoint uses (a crash between RequestAddress and CreateEndpoint)', async () => {
    const net = await createNetwork(p, { subnet: '10.1.0.0/24' });
    const r = await p.call('/IpamDriver.RequestAddress', { PoolID: net.poolId, Address: '', Options: null });
    const ip = (r.body.Address as string).split('/')[0];
    const plan = await run(dockerSays({ networks: new Set([NET_ID]), endpoints: new Set() }));
    expect(plan.orphanAddresses).toEqual([`${ip} (vxnet-local/10.1.0.0/24)`]);
    expect(await store.get(keys.address('vxnet-local', '10.1.0.0/24', ip))).toBeNull();
    // The gateway (shared, not a container address) stays.
    expect(await store.get(keys.address('vxnet-local', '10.1.0.0/24', '10.1.0.1'))).not.toBeNull();
  });

  it('keeps an address through dockerd\'s retry window even with a shorter grace', async () => {
    const net = await createNetwork(p, { subnet: '10.1.0.0/24' });
    await p.call('/IpamDriver.RequestAddress', { PoolID: net.poolId, Address: '', Options: null });
    const at = (ms: number) =>
      reconcile({ driver, ipam, dataplane: dp, docker: dockerSays({ networks: new Set([NET_ID]), endpoints: new Set() }), host: 'h1', log, graceMs: 1000, now: () => Date.now() + ms }, { dryRun: true });
    expect((await at(DOCKERD_RETRY_WINDOW_MS - 2000)).orphanAddresses).toEqual([]);
    expect((await at(DOCKERD_RETRY_WINDOW_MS + 2000)).orphanAddresses).toHaveLength(1);
  });

  it('removes a network dockerd removed while vxnet was down, with this host\'s pool share', async () => {
    await createNetwork(p, { subnet: '10.1.0.0/24' });
    const plan = await run(dockerSays({ networks: new Set(), endpoints: new Set() }));
    expect(plan.staleNetworks).toEqual([expect.stringContaining('subnet-10.1.0.0-24')]);
    expect(await store.list('/')).toEqual([]);
  });
  it('hands the ports step the endpoints that stay (also in a dry run) and folds its plan in', async () => {
    const net = await createNetwork(p, { subnet: '10.1.0.0/24' });
    await runContainer(p, net, EP_ID);
    await runContainer(p, net, EP_ID2);
    const seen: Array<{ live: string[]; dryRun: boolean }> = [];
    const ports = {
      async reconcile(readLive: () => Promise<Set<string>>, dryRun: boolean) {
        seen.push({ live: [...(await readLive())].sort(), dryRun });
        return { stalePorts: ['x (0.0.0.0:8080/tcp)'], repairPorts: [], orphanPortRules: ['aaaaaaaaaaaa'] };
      },
    };
    const view = dockerSays({ networks: new Set([NET_ID]), endpoints: new Set([EP_ID]) });
    const go = (dryRun: boolean) => reconcile({ driver, ports, ipam, dataplane: dp, docker: view, host: 'h1', log, now: () => Date.now() + 120_000 }, { dryRun });
    const dry = await go(true);
    expect(dry).toMatchObject({ stalePorts: ['x (0.0.0.0:8080/tcp)'], repairPorts: [], orphanPortRules: ['aaaaaaaaaaaa'] });
    await go(false);
    expect(seen).toEqual([{ live: [EP_ID], dryRun: true }, { live: [EP_ID], dryRun: false }]);
  });

  it('keeps the bridge and veth of a docker run that lands while the pass runs', async () => {
    // dockerd retries a docker run through a driver restart; its CreateEndpoint and Join can
    // land after the pass read the store and before it lists the links (here: in the ports
    // step). Found by the kill -9 churn test: a running container lost its interface.
    const net = await createNetwork(p, { subnet: '10.1.0.0/24' });
    await runContainer(p, net, EP_ID);
    const net2 = await createNetwork(p, { networkId: NET_ID2, subnet: '10.2.0.0/24' });
    let built: string[] = [];
    const seen: string[][] = [];
    const ports = {
      async reconcile(readLive: () => Promise<Set<string>>) {
        const before = new Set(dp.links.keys());
        await runContainer(p, net2, EP_ID2);
        built = [...dp.links.keys()].filter((n) => !before.has(n));
        seen.push([...(await readLive())].sort());
        return { stalePorts: [], repairPorts: [], orphanPortRules: [] };
      },
    };
    const docker = dockerSays({ networks: new Set([NET_ID, NET_ID2]), endpoints: new Set([EP_ID]) });
    const plan = await reconcile({ driver: p.driver, ports, ipam: p.ipam, dataplane: dp, docker, host: 'h1', log, now: () => Date.now() + 120_000 }, { dryRun: false });
    expect(built).toEqual(expect.arrayContaining([expect.stringMatching(/^vxb-/), expect.stringMatching(/^vxe-/)]));
    expect(plan.orphanLinks).toEqual([]);
    for (const name of built) expect(dp.links.has(name)).toBe(true);
    // The ports step is told about the new endpoint too (its published ports stay).
    expect(seen).toEqual([[EP_ID, EP_ID2].sort()]);
  });
});
