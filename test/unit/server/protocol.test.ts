import { pluginApp, PluginApp, NET_ID, EP_ID, EP_ID2 } from '../../helpers/plugin-app';
import { recordingDataplane, RecordingDataplane } from '../../helpers/recording-dataplane';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';
import { createNetwork, removeNetwork, runContainer, stopContainer, ok } from '../../helpers/docker-flow';
import type { Store } from '../../../src/store/types';

describe('src/server/app.ts (protocol, as dockerd speaks it)', () => {
  let store: Store;
  let dp: RecordingDataplane;
  let p: PluginApp;
  beforeEach(() => {
    store = tmpEmbeddedStore();
    dp = recordingDataplane();
    p = pluginApp(store, dp);
  });
  afterEach(async () => {
    await p.app.close();
    await store.close();
  });

  it('activates as a network and IPAM driver, from an empty body with no Content-Type', async () => {
    expect(await p.call('/Plugin.Activate')).toEqual({ status: 200, body: { Implements: ['NetworkDriver', 'IpamDriver'] } });
    expect((await p.call('/NetworkDriver.GetCapabilities')).body).toEqual({ Scope: 'local', ConnectivityScope: 'global' });
    expect((await p.call('/IpamDriver.GetCapabilities')).body).toEqual({ RequiresMACAddress: false, RequiresRequestReplay: false });
    expect((await p.call('/IpamDriver.GetDefaultAddressSpaces')).body).toEqual({
      LocalDefaultAddressSpace: 'vxnet-local',
      GlobalDefaultAddressSpace: 'vxnet-global',
    });
  });

  it('answers with the plugin content type and 404 for unknown paths', async () => {
    const res = await p.app.inject({ method: 'POST', url: '/Plugin.Activate' });
    expect(res.headers['content-type']).toBe('application/vnd.docker.plugins.v1.2+json');
    const missing = await p.call('/NetworkDriver.Frobnicate', {});
    expect(missing.status).toBe(404);
    expect(missing.body.Err).toMatch(/does not implement/);
  });

  it('runs network create, container start and stop, network rm, leaving nothing behind', async () => {
    const net = await createNetwork(p, { subnet: '10.123.0.0/24', ipRange: '10.123.0.128/25', aux: { auxa: '10.123.0.5' } });
    expect(net.gateway).toBe('10.123.0.1/24');
    const c = await runContainer(p, net, EP_ID);
    expect(c.address).toBe('10.123.0.128/24');
    expect(c.mac).toBe('02:42:0a:7b:00:80');
    expect(c.join).toEqual({ InterfaceName: { SrcName: 'vxc-8ef52212cc', DstPrefix: 'eth' }, Gateway: '10.123.0.1', DisableGatewayService: false });
    const info = await ok(p, '/NetworkDriver.EndpointOperInfo', { NetworkID: net.networkId, EndpointID: EP_ID });
    expect(info.Value).toMatchObject({ 'vxnet.vni': 256, 'vxnet.mac': c.mac });
    expect(dp.calls).toEqual(['ensureBridge vxb-256', 'ensureBridgeRules vxb-256', 'addSpoofElements vxe-8ef52212cc', `ensureVeth vxe-8ef52212cc`, `ensureFdb vxe-8ef52212cc ${c.mac}`]);
    // A second container on a network whose bridge is here: no firewall call (no iptables/ipset process).
    const c2 = await runContainer(p, net, EP_ID2);
    expect(dp.calls.slice(5)).toEqual(['ensureBridge vxb-256', `addSpoofElements vxe-${EP_ID2.slice(0, 10)}`, `ensureVeth vxe-${EP_ID2.slice(0, 10)}`, `ensureFdb vxe-${EP_ID2.slice(0, 10)} ${c2.mac}`]);
    await stopContainer(p, net, c2);
    dp.calls.length = 5;
    await stopContainer(p, net, c);
    // Leave takes the port's anti-spoofing entries; DeleteEndpoint takes the container's conntrack
    // entries and its veth (in that order: see removeEndpoint) and the spoofing entries again
    // (idempotent).
    expect(dp.calls.slice(5)).toEqual(['removeSpoofElements vxe-8ef52212cc', 'forgetFlows 10.123.0.128', 'releaseVeth vxe-8ef52212cc', 'removeSpoofElements vxe-8ef52212cc', 'removeVxlan vxv-256', 'removeBridgeRules vxb-256', 'removeBridge vxb-256']);
    await removeNetwork(p, net, ['10.123.0.5']);
    expect(await store.list('/')).toEqual([]);
  });

  it('keeps a user MAC and does not send one back', async () => {
    const net = await createNetwork(p, { subnet: '10.1.0.0/24' });
    const addr = await ok(p, '/IpamDriver.RequestAddress', { PoolID: net.poolId, Address: '', Options: null });
    const ce = await ok(p, '/NetworkDriver.CreateEndpoint', {
      NetworkID: NET_ID,
      EndpointID: EP_ID,
      Interface: { Address: addr.Address, AddressIPv6: '', MacAddress: '02:11:22:33:44:55' },
      Options: {},
    });
    expect(ce).toEqual({});
  });

  it('gives internal networks no gateway and no gateway service', async () => {
    const net = await createNetwork(p, { subnet: '10.1.0.0/24', internal: true });
    const c = await runContainer(p, net, EP_ID);
    expect(c.join).toEqual({ InterfaceName: { SrcName: 'vxc-8ef52212cc', DstPrefix: 'eth' }, DisableGatewayService: true });
  });

  it('treats repeated calls as the same call', async () => {
    const net = await createNetwork(p, { subnet: '10.1.0.0/24' });
    const body = {
      NetworkID: NET_ID,
      Options: { 'com.docker.network.generic': {} },
      IPv4Data: [{ AddressSpace: 'vxnet-local', Pool: '10.1.0.0/24', Gateway: '10.1.0.1/24' }],
      IPv6Data: [],
    };
    await ok(p, '/NetworkDriver.CreateNetwork', body);
    const c = await runContainer(p, net, EP_ID);
    const again = await ok(p, '/NetworkDriver.Join', { NetworkID: NET_ID, EndpointID: EP_ID, SandboxKey: '/x', Options: {} });
    expect(again).toEqual(c.join);
    await ok(p, '/NetworkDriver.DeleteEndpoint', { NetworkID: NET_ID, EndpointID: EP_ID });
    await ok(p, '/NetworkDriver.DeleteEndpoint', { NetworkID: NET_ID, EndpointID: EP_ID });
    await ok(p, '/NetworkDriver.DeleteNetwork', { NetworkID: NET_ID });
    await ok(p, '/NetworkDriver.DeleteNetwork', { NetworkID: NET_ID });
  });

  it('rolls a failed Join back: no veth, no bridge left', async () => {
    const failing = pluginApp(store, dp, { failAt: (s) => { if (s === 'join:after-veth') throw new Error('injected'); } });
    const net = await createNetwork(failing, { subnet: '10.1.0.0/24' });
    const addr = await ok(failing, '/IpamDriver.RequestAddress', { PoolID: net.poolId, Address: '', Options: null });
    await ok(failing, '/NetworkDriver.CreateEndpoint', { NetworkID: NET_ID, EndpointID: EP_ID, Interface: { Address: addr.Address, AddressIPv6: '', MacAddress: '' }, Options: {} });
    const r = await failing.call('/NetworkDriver.Join', { NetworkID: NET_ID, EndpointID: EP_ID, SandboxKey: '/x', Options: {} });
    expect(r.status).toBe(500);
    expect(r.body.Err).toMatch(/injected/);
    expect([...dp.links.keys()]).toEqual([]);
    await failing.app.close();
  });

  it('shares one bridge between two containers and removes it with the last', async () => {
    const net = await createNetwork(p, { subnet: '10.1.0.0/24' });
    const a = await runContainer(p, net, EP_ID);
    const b = await runContainer(p, net, EP_ID2);
    await stopContainer(p, net, a);
    expect(dp.links.has('vxb-256')).toBe(true);
    await stopContainer(p, net, b);
    expect(dp.links.has('vxb-256')).toBe(false);
  });

  it('keeps an idle network\'s bridge for the teardown delay, reuses it, and removes it after', async () => {
    const delayed = pluginApp(store, dp, { teardownDelayMs: 150 });
    const net = await createNetwork(delayed, { subnet: '10.1.0.0/24' });
    const a = await runContainer(delayed, net, EP_ID);
    await stopContainer(delayed, net, a);
    expect(dp.links.has('vxb-256')).toBe(true);
    // A container started within the delay reuses the bridge, and cancels its removal.
    const b = await runContainer(delayed, net, EP_ID2);
    await new Promise((r) => setTimeout(r, 250));
    expect(dp.links.has('vxb-256')).toBe(true);
    await stopContainer(delayed, net, b);
    await new Promise((r) => setTimeout(r, 250));
    expect(dp.links.has('vxb-256')).toBe(false);
    expect(dp.calls.filter((c) => c === 'ensureBridge vxb-256')).toHaveLength(2);
    await delayed.app.close();
  });

  it('removes the devices at once with DeleteNetwork, whatever the delay', async () => {
    const delayed = pluginApp(store, dp, { teardownDelayMs: 60_000 });
    const net = await createNetwork(delayed, { subnet: '10.1.0.0/24' });
    const a = await runContainer(delayed, net, EP_ID);
    await stopContainer(delayed, net, a);
    expect(dp.links.has('vxb-256')).toBe(true);
    await removeNetwork(delayed, net);
    expect(dp.links.size).toBe(0);
    await delayed.app.close();
  });

  it('logs one line per call with its duration and outcome', async () => {
    await p.call('/Plugin.Activate');
    await p.call('/NetworkDriver.Join', {});
    const calls = p.logs.filter((l) => l.call);
    expect(calls[0]).toMatchObject({ call: 'Plugin.Activate', status: 200, msg: 'plugin call' });
    expect(typeof calls[0].ms).toBe('number');
    expect(calls[1]).toMatchObject({ call: 'NetworkDriver.Join', status: 500, msg: 'plugin call failed' });
  });
});
