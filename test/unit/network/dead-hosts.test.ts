import { sweepDeadHosts, DeadHostDeps } from '../../../src/network/dead-hosts';
import { createLogger } from '../../../src/log';
import { recordingDataplane } from '../../helpers/recording-dataplane';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';
import { pluginApp, PluginApp, testDomain, TEST_KEYS, NET_ID, NET_ID2, EP_ID, EP_ID2 } from '../../helpers/plugin-app';
import { createNetwork, runContainer } from '../../helpers/docker-flow';
import type { Store } from '../../../src/store/types';

const keys = TEST_KEYS;
const log = createLogger('silent');
const GRACE = 60_000;

describe('src/network/dead-hosts.ts', () => {
  let store: Store;
  let h1: PluginApp;
  let h2: PluginApp;
  let clock: number;
  beforeEach(async () => {
    store = tmpEmbeddedStore();
    h1 = pluginApp(store, recordingDataplane(), { host: 'h1' });
    h2 = pluginApp(store, recordingDataplane(), { host: 'h2' });
    clock = 1_000_000;
    // Both hosts have the network and a container; only h1 is alive (holds hosts/h1).
    const n1 = await createNetwork(h1, { networkId: NET_ID, subnet: '10.5.0.0/24' });
    const n2 = await createNetwork(h2, { networkId: NET_ID2, subnet: '10.5.0.0/24' });
    await runContainer(h1, n1, EP_ID);
    await runContainer(h2, n2, EP_ID2);
    await store.createIfAbsent(keys.host('h1'), JSON.stringify({ vtep: '172.31.0.1', version: 't' }));
  });
  afterEach(async () => {
    await h1.app.close();
    await h2.app.close();
    await store.close();
  });

  function sweeper(host: string): DeadHostDeps {
    const { ipam, driver } = testDomain(store, recordingDataplane(), { host });
    return { store, keys, host, graceMs: GRACE, driver, ipam, log, now: () => clock };
  }
  const h2Keys = async (): Promise<string[]> => (await store.list('/vxnet/v1/')).map((kv) => kv.key).filter((k) => k.includes('h2') || k.includes(EP_ID2));

  it('starts the clock, keeps the dead host\'s records through the grace, then releases them once', async () => {
    expect(await sweepDeadHosts(sweeper('h1'))).toEqual([]);
    expect(await store.get(keys.deadHost('h2'))).not.toBeNull();
    clock += GRACE - 1;
    expect(await sweepDeadHosts(sweeper('h1'))).toEqual([]);
    expect((await h2Keys()).length).toBeGreaterThan(1);
    clock += 2;
    // Two live hosts race for it: exactly one releases.
    const a = sweeper('h1');
    const b = { ...sweeper('h3') };
    const results = await Promise.all([sweepDeadHosts(a), sweepDeadHosts(b)]);
    expect(results.flat()).toEqual(['h2']);
    expect(await h2Keys()).toEqual([]);
    // h1's own network, container and the shared pool are intact.
    expect(await store.get(keys.endpoint('subnet-10.5.0.0-24', EP_ID))).not.toBeNull();
    const pool = JSON.parse((await store.get(keys.pool('vxnet-local', '10.5.0.0/24')))!.value);
    expect(Object.keys(pool.hosts)).toEqual(['h1']);
    // h2's container address is free again; the gateway stays, now counted for h1 alone.
    const addrs = (await store.list(keys.addresses('vxnet-local', '10.5.0.0/24'))).map((kv) => JSON.parse(kv.value));
    expect(addrs.filter((a) => a.kind === 'container').map((a) => a.host)).toEqual(['h1']);
    expect(addrs.filter((a) => a.kind === 'gateway').map((a) => Object.keys(a.hosts))).toEqual([['h1']]);
    expect(await store.get(keys.deadHost('h2'))).toBeNull();
  });

  it('stops the clock when the host comes back', async () => {
    await sweepDeadHosts(sweeper('h1'));
    await store.createIfAbsent(keys.host('h2'), JSON.stringify({ vtep: '172.31.0.2', version: 't' }));
    clock += GRACE * 2;
    expect(await sweepDeadHosts(sweeper('h1'))).toEqual([]);
    expect(await store.get(keys.deadHost('h2'))).toBeNull();
    expect(await store.get(keys.endpoint('subnet-10.5.0.0-24', EP_ID2))).not.toBeNull();
  });
});
