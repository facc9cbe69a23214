// Three hosts (network namespaces on a private underlay), one etcd, a vxnet driver per host,
// "containers" wired the way dockerd wires them. FORWARD at DROP and bridged frames through
// iptables, as on a real Docker host.
import { execFileSync } from 'node:child_process';
import { Host, upHost, downHost } from '../helpers/hosts';
import { eventually } from '../helpers/eventually';
import { Driver, startDriver, socketFromOutside } from '../helpers/vxnet-in-host';
import { HostEtcd, startEtcdInHost } from '../helpers/etcd-in-host';
import { FakeContainer, FakeNetwork, createFakeNetwork, removeFakeNetwork, startFakeContainer, stopFakeContainer, pingFrom } from '../helpers/fake-container';
import { pluginOk } from '../helpers/plugin-client';

jest.setTimeout(180_000);

const SUBNET = '10.90.0.0/24';
const LEASE_TTL = 3;
const ZERO = '00:00:00:00:00:00';

interface FdbRow {
  mac: string;
  dst?: string;
}

function fdb(host: Host, dev: string): FdbRow[] {
  try {
    return JSON.parse(execFileSync('bridge', ['-n', host.name, '-j', 'fdb', 'show', 'dev', dev], { encoding: 'utf8' })) as FdbRow[];
  } catch {
    return [];
  }
}

function neigh(host: Host, dev: string): Array<{ dst: string; lladdr: string }> {
  return JSON.parse(execFileSync('ip', ['-n', host.name, '-j', 'neigh', 'show', 'dev', dev], { encoding: 'utf8' })) as Array<{ dst: string; lladdr: string }>;
}

function vxLinks(host: Host): string[] {
  const links = JSON.parse(execFileSync('ip', ['-n', host.name, '-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string }>;
  return links.map((l) => l.ifname).filter((n) => n.startsWith('vx'));
}


describe('vxnet across 3 hosts with etcd', () => {
  let etcdHost: Host;
  let etcd: HostEtcd;
  const hosts: Host[] = [];
  const drivers: Driver[] = [];
  const socks: string[] = [];
  const nets: FakeNetwork[] = [];
  const containers: FakeContainer[] = [];
  let dev = '';

  async function driverFor(i: number): Promise<Driver> {
    return startDriver(hosts[i], {
      VXNET_STORE: 'etcd',
      VXNET_ETCD_ENDPOINTS: etcd.endpoint,
      VXNET_VTEP_INTERFACE: 'eth0',
      VXNET_LEASE_TTL: String(LEASE_TTL),
    });
  }

  beforeAll(async () => {
    etcdHost = await upHost('vxt-m0', '172.31.254.40', { docker: null });
    etcd = await startEtcdInHost(etcdHost);
    for (let i = 1; i <= 3; i++) {
      const h = await upHost(`vxt-m${i}`, `172.31.254.4${i}`, { docker: null });
      // What dockerd does to every host: bridged frames through iptables, FORWARD dropped.
      await h.execOk(['sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=1']);
      await h.execOk(['iptables', '-w', '-P', 'FORWARD', 'DROP']);
      hosts.push(h);
      drivers.push(await driverFor(i - 1));
      socks.push(socketFromOutside(h));
    }
  });

  afterAll(async () => {
    for (const c of containers) execFileSync('ip', ['netns', 'del', c.netns], { stdio: 'ignore' });
    for (const d of drivers) await d.stop();
    await etcd?.stop();
    for (const h of hosts) await downHost(h);
    if (etcdHost) await downHost(etcdHost);
  });

  it('joins the same network on every host, with one shared pool', async () => {
    for (const s of socks) nets.push(await createFakeNetwork(s, SUBNET));
    expect(nets.map((n) => n.gateway)).toEqual(['10.90.0.1/24', '10.90.0.1/24', '10.90.0.1/24']);
    expect(new Set(nets.map((n) => n.poolId)).size).toBe(1);
  });

  it('refuses the same subnet with other settings on another host', async () => {
    const r = createFakeNetwork(socks[1], SUBNET, { 'com.docker.network.driver.mtu': '1300' });
    await expect(r).rejects.toThrow(/already exists with MTU 1450 \(asked: 1300\)/);
  });

  it('lets containers on three hosts ping each other (full mesh)', async () => {
    for (let i = 0; i < 3; i++) containers.push(await startFakeContainer(hosts[i].name, socks[i], nets[i], `vxt-c${i + 1}`));
    const ips = containers.map((c) => c.address.split('/')[0]);
    expect(new Set(ips).size).toBe(3);
    for (const from of containers) {
      for (const ip of ips) expect(await pingFrom(from, ip)).toBe(true);
    }
  });

  it('programs static FDB and neighbour entries for remote endpoints only', async () => {
    dev = vxLinks(hosts[0]).find((n) => n.startsWith('vxv-')) as string;
    expect(dev).toMatch(/^vxv-\d+$/);
    const rows = fdb(hosts[0], dev).filter((r) => r.dst);
    expect(rows).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ mac: containers[1].mac, dst: hosts[1].ip }),
        expect.objectContaining({ mac: containers[2].mac, dst: hosts[2].ip }),
        expect.objectContaining({ mac: ZERO, dst: hosts[1].ip }),
        expect.objectContaining({ mac: ZERO, dst: hosts[2].ip }),
      ]),
    );
    expect(rows.some((r) => r.mac === containers[0].mac)).toBe(false);
    const n = neigh(hosts[0], dev).map((e) => `${e.dst} ${e.lladdr}`);
    expect(n).toEqual(expect.arrayContaining([`${containers[1].address.split('/')[0]} ${containers[1].mac}`, `${containers[2].address.split('/')[0]} ${containers[2].mac}`]));
    // The anycast gateway is answered locally: it is never a neighbour entry on the tunnel.
    expect(n.some((e) => e.startsWith('10.90.0.1 '))).toBe(false);
    expect(await pingFrom(containers[0], '10.90.0.1')).toBe(true);
  });

  it('keeps gateway ARP on the local host: nothing leaves through the tunnel', async () => {
    const txPackets = (): number => {
      const out = JSON.parse(execFileSync('ip', ['-n', hosts[0].name, '-s', '-j', 'link', 'show', 'dev', dev], { encoding: 'utf8' })) as Array<{ stats64: { tx: { packets: number } } }>;
      return out[0].stats64.tx.packets;
    };
    // An idle window, then a window in which the container resolves and pings its gateway;
    // both must send nothing through the tunnel. Rare background frames (none of them ARP)
    // can spoil an idle window, so up to 3 tries; gateway ARP crossing would fail every one.
    const windows: Array<[number, number]> = [];
    for (let attempt = 0; attempt < 3; attempt++) {
      const idle = txPackets();
      await new Promise((r) => setTimeout(r, 1000));
      const idleDelta = txPackets() - idle;
      execFileSync('ip', ['-n', containers[0].netns, 'neigh', 'flush', 'dev', 'eth0']);
      const before = txPackets();
      expect(await pingFrom(containers[0], '10.90.0.1', 2)).toBe(true);
      windows.push([idleDelta, txPackets() - before]);
      if (idleDelta === 0 && txPackets() - before === 0) break;
    }
    expect(windows[windows.length - 1]).toEqual([0, 0]);
  });

  it('removes a stopped container from the other hosts', async () => {
    const gone = containers[1];
    await stopFakeContainer(gone);
    const ms = await eventually('entry removed on host1', () => !fdb(hosts[0], dev).some((r) => r.mac === gone.mac), 2000);
    expect(ms).toBeLessThan(2000);
    expect(neigh(hosts[0], dev).some((e) => e.lladdr === gone.mac)).toBe(false);
  });

  it('reaches an address moved to another host at once (no stale entry anywhere)', async () => {
    const old = containers[1];
    const moved = await startFakeContainer(hosts[2].name, socks[2], nets[2], 'vxt-c4', old.address.split('/')[0]);
    containers[1] = moved;
    expect(moved.mac).toBe(old.mac); // MAC derived from the IP: a moved IP keeps its MAC
    await eventually('entry points at host3', () => fdb(hosts[0], dev).some((r) => r.mac === moved.mac && r.dst === hosts[2].ip), 2000);
    expect(await pingFrom(containers[0], moved.address.split('/')[0])).toBe(true);
    expect(await pingFrom(containers[2], moved.address.split('/')[0])).toBe(true);
  });

  it('reaches an address reused on the same host as before', async () => {
    const old = containers[1];
    await stopFakeContainer(old);
    const again = await startFakeContainer(hosts[0].name, socks[0], nets[0], 'vxt-c5', old.address.split('/')[0]);
    containers[1] = again;
    await eventually('entry points at host1', () => fdb(hosts[2], dev).some((r) => r.mac === again.mac && r.dst === hosts[0].ip), 2000);
    expect(await pingFrom(containers[2], again.address.split('/')[0])).toBe(true);
    expect(fdb(hosts[0], dev).some((r) => r.mac === again.mac && r.dst)).toBe(false);
  });

  it('never hands out one address twice: 3 hosts x 50 concurrent requests', async () => {
    const all = await Promise.all(
      socks.flatMap((s, i) =>
        Array.from({ length: 50 }, () => pluginOk(s, 'IpamDriver.RequestAddress', { PoolID: nets[i].poolId, Address: '', Options: null })),
      ),
    );
    const addrs = all.map((r) => r.Address as string);
    expect(new Set(addrs).size).toBe(150);
    await Promise.all(addrs.map((a, k) => pluginOk(socks[Math.floor(k / 50)], 'IpamDriver.ReleaseAddress', { PoolID: nets[0].poolId, Address: a.split('/')[0] })));
  });

  it('never gives one auto-chosen subnet to two networks: 3 hosts x 5 concurrent RequestPool', async () => {
    const all = await Promise.all(
      socks.flatMap((s) => Array.from({ length: 5 }, () => pluginOk(s, 'IpamDriver.RequestPool', { AddressSpace: 'vxnet-local', Pool: '', SubPool: '', Options: {}, V6: false }))),
    );
    expect(new Set(all.map((r) => r.Pool)).size).toBe(15);
    await Promise.all(all.map((r, k) => pluginOk(socks[Math.floor(k / 5)], 'IpamDriver.ReleasePool', { PoolID: r.PoolID })));
  });

  it('drops a dead host\'s entries within the lease TTL and restores them when it returns', async () => {
    await drivers[2].stop('SIGKILL');
    const dropped = await eventually('host3 entries dropped on host1', () => !fdb(hosts[0], dev).some((r) => r.dst === hosts[2].ip), (LEASE_TTL + 2) * 1000);
    expect(dropped).toBeLessThanOrEqual((LEASE_TTL + 2) * 1000);
    drivers[2] = await driverFor(2);
    await eventually('host3 entries back on host1', () => fdb(hosts[0], dev).some((r) => r.dst === hosts[2].ip), 3000);
    expect(await pingFrom(containers[0], containers[2].address.split('/')[0])).toBe(true);
  });

  it('removes every vxnet link when the containers and networks are gone', async () => {
    for (const c of containers.splice(0)) await stopFakeContainer(c);
    for (let i = 0; i < 3; i++) await removeFakeNetwork(socks[i], nets[i]);
    for (const h of hosts) expect(vxLinks(h)).toEqual([]);
  });
});
