// Networks whose addresses come from Docker's default IPAM: refused where the store is shared
// (each dockerd would hand out the same addresses on one L2 network), kept on a single host.
import { pluginApp, PluginApp, NET_ID } from '../../helpers/plugin-app';
import { recordingDataplane } from '../../helpers/recording-dataplane';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';
import { createNetwork } from '../../helpers/docker-flow';
import type { Store } from '../../../src/store/types';

/** CreateNetwork as dockerd sends it after Docker's default IPAM gave the pool. */
function dockerIpamNetwork(space: string, pool = '10.79.9.0/24'): Record<string, unknown> {
  return {
    NetworkID: NET_ID,
    Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': {} },
    IPv4Data: [{ AddressSpace: space, Pool: pool, Gateway: `${pool.replace(/0\/24$/, '1')}/24` }],
    IPv6Data: [],
  };
}

describe('src/network/network-driver.ts (networks without vxnet IPAM)', () => {
  let store: Store;
  let p: PluginApp;
  beforeEach(() => {
    store = tmpEmbeddedStore();
  });
  afterEach(async () => {
    await p.app.close();
    await store.close();
  });

  it('refuses Docker\'s default IPAM on a shared store, naming the fix, and writes nothing', async () => {
    p = pluginApp(store, recordingDataplane(), { requireVxnetIpam: true });
    const r = await p.call('/NetworkDriver.CreateNetwork', dockerIpamNetwork('LocalDefault'));
    expect(r.status).toBe(500);
    expect(r.body.Err).toBe(
      `network ${NET_ID} (subnet 10.79.9.0/24) takes its addresses from another IPAM driver (address space "LocalDefault"): ` +
        'with a shared store every host would hand out the same addresses on one network; add --ipam-driver vxnet ' +
        '(Compose: ipam: driver: vxnet) so addresses are unique across hosts',
    );
    expect(p.logs.some((l) => (l.err as { code?: string } | undefined)?.code === 'VXNET_ERR_IPAM_REQUIRED' || l.code === 'VXNET_ERR_IPAM_REQUIRED')).toBe(true);
    expect(await store.list('/')).toEqual([]);
  });

  it('refuses a foreign IPv6 pool beside a vxnet IPv4 one', async () => {
    p = pluginApp(store, recordingDataplane(), { requireVxnetIpam: true });
    const body = dockerIpamNetwork('vxnet-local');
    body.IPv6Data = [{ AddressSpace: 'LocalDefault', Pool: 'fd00:79::/64' }];
    const r = await p.call('/NetworkDriver.CreateNetwork', body);
    expect(r.body.Err).toMatch(/subnet fd00:79::\/64\) takes its addresses from another IPAM driver/);
  });

  it('accepts vxnet IPAM on a shared store', async () => {
    p = pluginApp(store, recordingDataplane(), { requireVxnetIpam: true });
    await createNetwork(p, { subnet: '10.79.9.0/24' });
    expect((await store.list('/vxnet/v1/networks/')).length).toBe(1);
  });

  it('keeps Docker\'s default IPAM working on a single host (embedded store)', async () => {
    p = pluginApp(store, recordingDataplane());
    const r = await p.call('/NetworkDriver.CreateNetwork', dockerIpamNetwork('LocalDefault'));
    expect(r).toEqual({ status: 200, body: {} });
    expect((await store.list('/vxnet/v1/networks/')).map((kv) => kv.key)).toEqual(['/vxnet/v1/networks/subnet-10.79.9.0-24']);
  });
});
