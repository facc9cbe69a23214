// The plugin app over the real dataplane (netlink + iptables) in this test's private netns:
// the calls dockerd makes, then the kernel read back.
import { execFileSync, spawnSync } from 'node:child_process';
import * as dataplane from '../../src/dataplane';
import { pluginApp, PluginApp, EP_ID, EP_ID2 } from '../helpers/plugin-app';
import { tmpEmbeddedStore } from '../helpers/tmp-store';
import { createNetwork, removeNetwork, runContainer, stopContainer, ok } from '../helpers/docker-flow';
import type { Store } from '../../src/store/types';

interface IpLink {
  ifname: string;
  mtu: number;
  address: string;
  master?: string;
  operstate: string;
  linkinfo?: { info_kind: string };
}

function links(): IpLink[] {
  return JSON.parse(execFileSync('ip', ['-j', '-d', 'link', 'show'], { encoding: 'utf8' })) as IpLink[];
}
function link(name: string): IpLink | undefined {
  return links().find((l) => l.ifname === name);
}
function vxLinks(): string[] {
  return links().map((l) => l.ifname).filter((n) => n.startsWith('vx'));
}
function addrs(name: string): string[] {
  const out = JSON.parse(execFileSync('ip', ['-j', 'addr', 'show', 'dev', name], { encoding: 'utf8' })) as Array<{ addr_info: Array<{ local: string; prefixlen: number; scope: string }> }>;
  return out[0].addr_info.filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`);
}
function rules(): string {
  return execFileSync('iptables', ['-w', '-S'], { encoding: 'utf8' });
}
/** Members of vxnet's ipsets ("set member" lines); the per-network part of its firewall. */
function setEntries(): string[] {
  const r = spawnSync('ipset', ['save'], { encoding: 'utf8' });
  return r.stdout.split('\n').filter((l) => /^add vxnet-/.test(l)).map((l) => l.slice(4));
}

describe('src/network/network-driver.ts on the real kernel', () => {
  let store: Store;
  let p: PluginApp;
  beforeEach(() => {
    store = tmpEmbeddedStore();
    p = pluginApp(store, dataplane);
  });
  afterEach(async () => {
    await p.app.close();
    await store.close();
    // Deleting one end of a veth pair deletes both: ignore names already gone.
    for (const n of vxLinks()) spawnSync('ip', ['link', 'del', n]);
    // Entries of networks a test left running; the next Join puts chains and sets back.
    await dataplane.removeFirewall();
    // Join made the anti-spoofing table (it outlives the driver by design): a later test file in
    // this namespace with its own vxe-* ports would find them closed.
    await dataplane.removeAntispoof();
  });
  afterAll(() => {
    dataplane.closeRtnl();
  });

  it('builds bridge and veth on Join and removes them with the last endpoint', async () => {
    const net = await createNetwork(p, { subnet: '10.61.0.0/24', generic: { 'com.docker.network.driver.mtu': '1400' } });
    expect(vxLinks()).toEqual([]);
    const c = await runContainer(p, net, EP_ID);
    const br = link('vxb-256');
    expect(br).toMatchObject({ mtu: 1400, address: '02:76:78:00:01:00', linkinfo: { info_kind: 'bridge' } });
    expect(addrs('vxb-256')).toEqual(['10.61.0.1/24']);
    // No IPv6 link-local: every host's bridge shares one MAC and would derive one fe80:: address.
    expect(execFileSync('ip', ['-6', 'addr', 'show', 'dev', 'vxb-256'], { encoding: 'utf8' })).not.toMatch(/fe80/);
    expect(link('vxe-8ef52212cc')).toMatchObject({ mtu: 1400, master: 'vxb-256' });
    expect(link('vxc-8ef52212cc')).toMatchObject({ mtu: 1400, address: c.mac });
    // The first Join put the constant chain in place and the network's subnet in the sets.
    expect(rules()).toMatch(/-A VXNET-ISOLATION -i vxb-\+ -o vxb-\+ -m physdev --physdev-is-bridged -j ACCEPT/);
    expect(setEntries().sort()).toEqual(['vxnet-egress 10.61.0.0/24,vxb-256', 'vxnet-masq 10.61.0.0/24']);
    // The container MAC is pinned on its own bridge port.
    const fdb = execFileSync('bridge', ['fdb', 'show', 'dev', 'vxe-8ef52212cc'], { encoding: 'utf8' });
    expect(fdb).toMatch(new RegExp(`${c.mac} master vxb-256 static`));

    const c2 = await runContainer(p, net, EP_ID2);
    await stopContainer(p, net, c);
    // DeleteEndpoint hands the veth to the reaper thread and answers before the kernel is done.
    await dataplane.drainReleasedVeths();
    expect(link('vxe-8ef52212cc')).toBeUndefined();
    expect(link('vxb-256')).toBeDefined();
    await stopContainer(p, net, c2);
    expect(vxLinks()).toEqual([]);
    expect(setEntries()).toEqual([]);
    await removeNetwork(p, net);
    expect(await store.list('/')).toEqual([]);
  });

  it('repairs the kernel on a repeated Join (veth deleted behind its back)', async () => {
    const net = await createNetwork(p, { subnet: '10.62.0.0/24' });
    await runContainer(p, net, EP_ID);
    execFileSync('ip', ['link', 'del', 'vxe-8ef52212cc']);
    await ok(p, '/NetworkDriver.Join', { NetworkID: net.networkId, EndpointID: EP_ID, SandboxKey: '/x', Options: {} });
    expect(link('vxe-8ef52212cc')).toMatchObject({ master: 'vxb-256' });
  });

  it('rolls back a Join that fails after creating the bridge and veth', async () => {
    const failing = pluginApp(store, dataplane, { failAt: (s) => { if (s === 'join:after-fdb') throw new Error('injected late failure'); } });
    const net = await createNetwork(failing, { subnet: '10.63.0.0/24' });
    const addr = await ok(failing, '/IpamDriver.RequestAddress', { PoolID: net.poolId, Address: '', Options: null });
    await ok(failing, '/NetworkDriver.CreateEndpoint', { NetworkID: net.networkId, EndpointID: EP_ID, Interface: { Address: addr.Address, AddressIPv6: '', MacAddress: '' }, Options: {} });
    const r = await failing.call('/NetworkDriver.Join', { NetworkID: net.networkId, EndpointID: EP_ID, SandboxKey: '/x', Options: {} });
    expect(r.status).toBe(500);
    expect(vxLinks()).toEqual([]);
    expect(setEntries()).toEqual([]);
    await failing.app.close();
  });

  it('isolates an internal network: bridge without gateway address, no egress entry', async () => {
    const net = await createNetwork(p, { subnet: '10.64.0.0/24', internal: true });
    await runContainer(p, net, EP_ID);
    expect(addrs('vxb-256')).toEqual([]);
    expect(setEntries()).toEqual([]);
    expect(rules()).toMatch(/-A VXNET-ISOLATION -i vxb-\+ -j DROP/);
  });

  it('without masquerade: egress entry, no NAT entry', async () => {
    const net = await createNetwork(p, { subnet: '10.65.0.0/24', generic: { 'com.docker.network.bridge.enable_ip_masquerade': 'false' } });
    await runContainer(p, net, EP_ID);
    expect(setEntries()).toEqual(['vxnet-egress 10.65.0.0/24,vxb-256']);
  });
});
