// Plugin calls read networks and endpoints from memory (network/record-cache.ts), fed by an etcd
// watch. Two hosts with etcd, no dockerd: records that another host removes from the store are
// not served from memory afterwards, and what is served matches the store.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { Host, upHost, downHost, REPO_ROOT } from '../helpers/hosts';
import { eventually } from '../helpers/eventually';
import { Driver, startDriver, socketFromOutside } from '../helpers/vxnet-in-host';
import { HostEtcd, startEtcdInHost } from '../helpers/etcd-in-host';
import { FakeContainer, FakeNetwork, createFakeNetwork, startFakeContainer, pingFrom } from '../helpers/fake-container';
import { pluginCall, pluginOk } from '../helpers/plugin-client';

jest.setTimeout(180_000);

const SUBNET = '10.94.0.0/24';
const LNET = 'subnet-10.94.0.0-24';
const PREFIX = '/vxnet/v1/';
const ETCD3 = path.join(REPO_ROOT, 'node_modules/etcd3');

/**
 * Another host's store client at work: a node process in `from`'s namespace that runs one etcd
 * operation (`del` or `get` of a key) against the cluster, as any vxnet host could.
 */
async function etcdOp(from: Host, endpoint: string, op: 'del' | 'get', key: string): Promise<string | null> {
  const script = `
    const { Etcd3 } = require(${JSON.stringify(ETCD3)});
    const c = new Etcd3({ hosts: [${JSON.stringify(endpoint)}] });
    (async () => {
      const out = ${JSON.stringify(op)} === 'del' ? String((await c.delete().key(${JSON.stringify(key)})).deleted) : await c.get(${JSON.stringify(key)}).string();
      process.stdout.write(JSON.stringify(out));
      c.close();
    })().catch((e) => { console.error(e); process.exit(1); });`;
  const out = await from.execOk([process.execPath, '-e', script]);
  return JSON.parse(out) as string | null;
}

function fdbMacs(host: Host, dev: string): string[] {
  try {
    return (JSON.parse(execFileSync('bridge', ['-n', host.name, '-j', 'fdb', 'show', 'dev', dev], { encoding: 'utf8' })) as Array<{ mac: string }>).map((r) => r.mac);
  } catch {
    return [];
  }
}

describe('records in memory follow the store (2 hosts, etcd)', () => {
  let etcdHost: Host;
  let etcd: HostEtcd;
  const hosts: Host[] = [];
  const drivers: Driver[] = [];
  const socks: string[] = [];
  const nets: FakeNetwork[] = [];
  const containers: FakeContainer[] = [];

  beforeAll(async () => {
    etcdHost = await upHost('vxt-rc0', '172.31.254.145', { docker: null });
    etcd = await startEtcdInHost(etcdHost);
    for (let i = 1; i <= 2; i++) {
      const h = await upHost(`vxt-rc${i}`, `172.31.254.14${5 + i}`, { docker: null });
      await h.execOk(['sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=1']);
      await h.execOk(['iptables', '-w', '-P', 'FORWARD', 'DROP']);
      hosts.push(h);
      drivers.push(await startDriver(h, { VXNET_STORE: 'etcd', VXNET_ETCD_ENDPOINTS: etcd.endpoint, VXNET_VTEP_INTERFACE: 'eth0' }));
      socks.push(socketFromOutside(h));
    }
    for (const s of socks) nets.push(await createFakeNetwork(s, SUBNET));
    for (let i = 0; i < 2; i++) containers.push(await startFakeContainer(hosts[i].name, socks[i], nets[i], `vxt-rcc${i + 1}`));
  });

  afterAll(async () => {
    for (const c of containers) execFileSync('ip', ['netns', 'del', c.netns], { stdio: 'ignore' });
    for (const d of drivers) await d.stop();
    await etcd?.stop();
    for (const h of hosts) await downHost(h);
    if (etcdHost) await downHost(etcdHost);
  });

  it('serves what the store holds: EndpointOperInfo matches the endpoint record', async () => {
    const [c1] = containers;
    const info = (await pluginOk(socks[0], 'NetworkDriver.EndpointOperInfo', { NetworkID: c1.net.networkId, EndpointID: c1.endpointId })).Value as Record<string, unknown>;
    const stored = JSON.parse((await etcdOp(hosts[1], etcd.endpoint, 'get', `${PREFIX}endpoints/${LNET}/${c1.endpointId}`)) as string) as { mac: string; host: string };
    expect(info['vxnet.mac']).toBe(stored.mac);
    expect(info['vxnet.host']).toBe(stored.host);
    expect(info['vxnet.network']).toBe(LNET);
    expect(await pingFrom(containers[1], c1.address.split('/')[0])).toBe(true);
  });

  it('an endpoint removed from the store by another host is not served by its own host', async () => {
    const [c1] = containers;
    const ids = { NetworkID: c1.net.networkId, EndpointID: c1.endpointId };
    // Host 2 removes host 1's endpoint record (what dead-host cleanup does to a host it buried).
    expect(await etcdOp(hosts[1], etcd.endpoint, 'del', `${PREFIX}endpoints/${LNET}/${c1.endpointId}`)).toBe('1');
    await eventually('host 1 refuses the endpoint', async () => (await pluginCall(socks[0], 'NetworkDriver.EndpointOperInfo', ids)).status === 500, 10_000, 50);
    const join = await pluginCall(socks[0], 'NetworkDriver.Join', { ...ids, SandboxKey: '/x', Options: {} });
    expect(join.status).toBe(500);
    expect(String(join.body.Err)).toMatch(/unknown endpoint/);
    // Host 2's peer entries follow the same store: the tunnel entry for its MAC goes.
    const dev = execFileSync('ip', ['-n', hosts[1].name, '-o', 'link', 'show', 'type', 'vxlan'], { encoding: 'utf8' }).split(': ')[1].split('@')[0];
    await eventually('host 2 drops the peer', () => !fdbMacs(hosts[1], dev).includes(c1.mac), 10_000, 50);
    // A DeleteEndpoint for it afterwards is a no-op, not an error (dockerd may still send one).
    await pluginOk(socks[0], 'NetworkDriver.DeleteEndpoint', ids);
  });

  it("a Docker network record removed from the store is not served: the host's next endpoint is refused", async () => {
    const net = nets[0];
    expect(await etcdOp(hosts[1], etcd.endpoint, 'del', `${PREFIX}dnets/${hosts[0].name}/${net.networkId}`)).toBe('1');
    const addr = await pluginOk(socks[0], 'IpamDriver.RequestAddress', { PoolID: net.poolId, Address: '', Options: null });
    const attempt = async (): Promise<{ status: number; body: Record<string, unknown> }> =>
      pluginCall(socks[0], 'NetworkDriver.CreateEndpoint', { NetworkID: net.networkId, EndpointID: `${'e'.repeat(63)}1`, Interface: { Address: addr.Address, AddressIPv6: '', MacAddress: '' }, Options: {} });
    await eventually('host 1 refuses the network', async () => (await attempt()).status === 500, 10_000, 50);
    expect(String((await attempt()).body.Err)).toMatch(/unknown network/);
    expect(await etcdOp(hosts[1], etcd.endpoint, 'get', `${PREFIX}endpoints/${LNET}/${'e'.repeat(63)}1`)).toBeNull();
    await pluginOk(socks[0], 'IpamDriver.ReleaseAddress', { PoolID: net.poolId, Address: String(addr.Address).split('/')[0] });
  });

  it('the other host goes on serving from memory what it still has', async () => {
    const c2 = containers[1];
    const ids = { NetworkID: c2.net.networkId, EndpointID: c2.endpointId };
    expect((await pluginOk(socks[1], 'NetworkDriver.EndpointOperInfo', ids)).Value).toMatchObject({ 'vxnet.mac': c2.mac });
    await pluginOk(socks[1], 'NetworkDriver.Leave', ids);
  });
});
