// One logical network across hosts: found by -o vxnet.network or by subnet, one VNI cluster-wide.
import { pluginApp, PluginApp, NET_ID, NET_ID2 } from '../../helpers/plugin-app';
import { recordingDataplane } from '../../helpers/recording-dataplane';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';
import { createNetwork, removeNetwork } from '../../helpers/docker-flow';
import type { Store } from '../../../src/store/types';

describe('src/network/network-driver.ts (logical networks)', () => {
  let store: Store;
  let h1: PluginApp;
  let h2: PluginApp;
  beforeEach(() => {
    store = tmpEmbeddedStore();
    h1 = pluginApp(store, recordingDataplane(), { host: 'h1' });
    h2 = pluginApp(store, recordingDataplane(), { host: 'h2' });
  });
  afterEach(async () => {
    await h1.app.close();
    await h2.app.close();
    await store.close();
  });

  async function vnis(): Promise<string[]> {
    return (await store.list('/vxnet/v1/vnis/')).map((kv) => `${kv.key.split('/').pop()}=${kv.value}`);
  }

  it('gives the same subnet on two hosts one logical network and one VNI', async () => {
    const a = await createNetwork(h1, { networkId: NET_ID, subnet: '10.5.0.0/24' });
    const b = await createNetwork(h2, { networkId: NET_ID2, subnet: '10.5.0.0/24' });
    expect(await vnis()).toEqual(['256=subnet-10.5.0.0-24']);
    // One host's `docker network rm` releases nothing the other still uses.
    await removeNetwork(h1, a);
    expect(await vnis()).toEqual(['256=subnet-10.5.0.0-24']);
    expect((await store.list('/vxnet/v1/pools/')).length).toBe(1);
    await removeNetwork(h2, b);
    expect(await store.list('/')).toEqual([]);
  });

  it('names a logical network with vxnet.network and refuses another subnet under that name', async () => {
    await createNetwork(h1, { networkId: NET_ID, subnet: '10.5.0.0/24', generic: { 'vxnet.network': 'shop' } });
    await expect(createNetwork(h2, { networkId: NET_ID2, subnet: '10.6.0.0/24', generic: { 'vxnet.network': 'shop' } })).rejects.toThrow(
      /network shop already exists with IPv4 10.5.0.0\/24 gateway 10.5.0.1 \(asked: 10.6.0.0\/24 gateway 10.6.0.1\)/,
    );
  });

  it('takes a requested VNI, and refuses it when another network has it', async () => {
    await createNetwork(h1, { networkId: NET_ID, subnet: '10.5.0.0/24', generic: { 'vxnet.vni': '7000' } });
    expect(await vnis()).toEqual(['7000=subnet-10.5.0.0-24']);
    await expect(createNetwork(h2, { networkId: NET_ID2, subnet: '10.6.0.0/24', generic: { 'vxnet.vni': '7000' } })).rejects.toThrow(
      /VNI 7000 is already used by network subnet-10.5.0.0-24/,
    );
    // The refused create left no network record and no VNI behind.
    expect(await vnis()).toEqual(['7000=subnet-10.5.0.0-24']);
    expect((await store.list('/vxnet/v1/networks/')).length).toBe(1);
  });

  it('refuses a different gateway for the shared subnet on another host', async () => {
    await createNetwork(h1, { networkId: NET_ID, subnet: '10.5.0.0/24' });
    await expect(createNetwork(h2, { networkId: NET_ID2, subnet: '10.5.0.0/24', gateway: '10.5.0.254' })).rejects.toThrow(/already has gateway 10.5.0.1/);
  });

  it('refuses enable_ip_masquerade=false on a second host when the network masquerades, and records the option', async () => {
    const opt = 'com.docker.network.bridge.enable_ip_masquerade';
    await createNetwork(h1, { networkId: NET_ID, subnet: '10.5.0.0/24', generic: { [opt]: 'false' } });
    const rec = JSON.parse((await store.list('/vxnet/v1/networks/'))[0].value) as { masquerade: boolean };
    expect(rec.masquerade).toBe(false);
    await expect(createNetwork(h2, { networkId: NET_ID2, subnet: '10.5.0.0/24' })).rejects.toThrow(
      /already exists with enable_ip_masquerade false \(asked: true\)/,
    );
    await expect(createNetwork(h2, { networkId: NET_ID2, subnet: '10.5.0.0/24', generic: { [opt]: 'False' } })).resolves.toBeDefined();
  });
});
