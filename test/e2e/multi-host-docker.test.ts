// Three hosts, each with its own dockerd 20.10 (FORWARD at DROP, as dockerd leaves it) and its
// own vxnet driver, sharing one etcd: the same `docker network create` on every host joins one
// network, and containers on different hosts talk across the VXLAN overlay.
import { execFileSync } from 'node:child_process';
import { Host, upHost, downHost } from '../helpers/hosts';
import { eventually } from '../helpers/eventually';
import { ensureTestImage, TEST_IMAGE } from '../helpers/image';
import { Driver, startDriver, MAIN_JS } from '../helpers/vxnet-in-host';
import { HostEtcd, startEtcdInHost } from '../helpers/etcd-in-host';
import { containerIp } from '../helpers/docker-inspect';

jest.setTimeout(300_000);

const NET = 'vxt-span';
const CREATE = ['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', '10.91.0.0/24', '--gateway', '10.91.0.1', NET];

function fdbMacs(host: Host): Array<{ mac: string; dst?: string }> {
  const links = JSON.parse(execFileSync('ip', ['-n', host.name, '-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string }>;
  const dev = links.map((l) => l.ifname).find((n) => n.startsWith('vxv-'));
  if (!dev) return [];
  return JSON.parse(execFileSync('bridge', ['-n', host.name, '-j', 'fdb', 'show', 'dev', dev], { encoding: 'utf8' })) as Array<{ mac: string; dst?: string }>;
}


describe('vxnet across 3 dockerd hosts', () => {
  let etcdHost: Host;
  let etcd: HostEtcd;
  const hosts: Host[] = [];
  const drivers: Driver[] = [];
  let ipX2 = '';

  async function ipOf(h: Host, c: string): Promise<string> {
    return containerIp(h, NET, c);
  }
  async function macOf(h: Host, c: string): Promise<string> {
    return containerIp(h, NET, c, 'MacAddress');
  }

  beforeAll(async () => {
    etcdHost = await upHost('vxt-d0', '172.31.254.50', { docker: null });
    etcd = await startEtcdInHost(etcdHost);
    for (let i = 1; i <= 3; i++) {
      const h = await upHost(`vxt-d${i}`, `172.31.254.5${i}`, { docker: '20' });
      await ensureTestImage(h);
      hosts.push(h);
      drivers.push(await startDriver(h, { VXNET_STORE: 'etcd', VXNET_ETCD_ENDPOINTS: etcd.endpoint, VXNET_VTEP_INTERFACE: 'eth0' }));
    }
  });

  afterAll(async () => {
    for (const h of hosts) {
      await h.docker(['rm', '-f', 'x1', 'x2', 'x3']);
      await h.docker(['network', 'rm', NET]);
    }
    for (const d of drivers) await d.stop();
    await etcd?.stop();
    for (const h of hosts) await downHost(h);
    if (etcdHost) await downHost(etcdHost);
  });

  it('creates the same network on every host', async () => {
    for (const h of hosts) await h.dockerOk(CREATE);
    for (const h of hosts) expect(await h.execOk(['iptables', '-w', '-S', 'FORWARD'])).toContain('-P FORWARD DROP');
  });

  it('refuses a network without vxnet IPAM on the shared store, naming the fix, and leaves nothing', async () => {
    // Docker's default IPAM would give 10.79.9.2 to the first container on each host.
    for (const h of hosts.slice(0, 2)) {
      const r = await h.docker(['network', 'create', '-d', 'vxnet', '--subnet', '10.79.9.0/24', 'vxt-noipam']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('takes its addresses from another IPAM driver (address space "LocalDefault")');
      expect(r.stderr).toContain('add --ipam-driver vxnet');
      expect(await h.dockerOk(['network', 'ls', '--format', '{{.Name}}'])).not.toContain('vxt-noipam');
    }
    const status = JSON.parse(await hosts[0].execOk([process.execPath, MAIN_JS, 'status', '--json', '--socket', '/run/docker/plugins/vxnet.sock'])) as { networks: Array<{ network: string }> };
    expect(status.networks.map((n) => n.network)).not.toContain('subnet-10.79.9.0-24');
  });

  it('lets containers on host1 and host2 ping each other across hosts', async () => {
    await hosts[0].dockerOk(['run', '-d', '--name', 'x1', '--network', NET, TEST_IMAGE, 'sleep', '3600']);
    await hosts[1].dockerOk(['run', '-d', '--name', 'x2', '--network', NET, TEST_IMAGE, 'sleep', '3600']);
    const [ip1, ip2] = [await ipOf(hosts[0], 'x1'), await ipOf(hosts[1], 'x2')];
    expect(ip1).not.toBe(ip2);
    ipX2 = ip2;
    // Right after `docker run` returns: the peer entries must already be there (no poll lag).
    expect(await hosts[0].dockerOk(['exec', 'x1', 'ping', '-c', '3', '-W', '2', ip2])).toMatch(/3 packets received/);
    expect(await hosts[1].dockerOk(['exec', 'x2', 'ping', '-c', '3', '-W', '2', ip1])).toMatch(/3 packets received/);
    // Full-size frames fit: the inner MTU leaves room for the 50 bytes of VXLAN.
    expect(await hosts[0].dockerOk(['exec', 'x1', 'cat', '/sys/class/net/eth0/mtu'])).toBe('1450');
    expect(await hosts[0].dockerOk(['exec', 'x1', 'ping', '-c', '1', '-W', '2', '-s', '1422', ip2])).toMatch(/1 packets received/);
  });

  it('does not track frames between the two containers (fast path), on either host; their way out through the gateway is tracked', async () => {
    const [ip1, ip2] = [await ipOf(hosts[0], 'x1'), await ipOf(hosts[1], 'x2')];
    const icmpEntries = async (h: Host, a: string, b: string): Promise<number> =>
      (await h.execOk(['cat', '/proc/net/nf_conntrack'])).split('\n').filter((l) => / icmp /.test(l) && (l.includes(`src=${a} dst=${b} `) || l.includes(`src=${b} dst=${a} `))).length;
    expect(await hosts[0].dockerOk(['exec', 'x1', 'ping', '-c', '2', '-W', '2', ip2])).toMatch(/2 packets received/);
    expect(await hosts[0].dockerOk(['exec', 'x1', 'ping', '-c', '1', '-W', '2', '10.91.0.1'])).toMatch(/1 packets received/);
    // Host1 sees the frames come from the container's port, host2 from its VXLAN port: both skip conntrack.
    for (const h of hosts.slice(0, 2)) expect(await icmpEntries(h, ip1, ip2)).toBe(0);
    expect(await icmpEntries(hosts[0], ip1, '10.91.0.1')).toBe(1);
  });

  it('removes the entry from host1 when the container on host2 stops', async () => {
    const mac = await macOf(hosts[1], 'x2');
    expect(fdbMacs(hosts[0]).some((r) => r.mac === mac)).toBe(true);
    await hosts[1].dockerOk(['stop', '-t', '0', 'x2']);
    await eventually('x2 gone from host1', () => !fdbMacs(hosts[0]).some((r) => r.mac === mac), 2000);
  });

  it('reaches an address reused on host3 (--ip) from host1 at once', async () => {
    const reuse = ipX2;
    await hosts[1].dockerOk(['rm', '-f', 'x2']);
    await hosts[2].dockerOk(['run', '-d', '--name', 'x3', '--network', NET, '--ip', reuse, TEST_IMAGE, 'sleep', '3600']);
    expect(await hosts[0].dockerOk(['exec', 'x1', 'ping', '-c', '1', '-W', '2', reuse])).toMatch(/1 packets received/);
  });

  it('leaves no vxnet link once containers and networks are removed', async () => {
    for (const h of hosts) {
      await h.docker(['rm', '-f', 'x1', 'x2', 'x3']);
      await h.dockerOk(['network', 'rm', NET]);
      const links = await h.execOk(['ip', '-o', 'link', 'show']);
      expect(links.split('\n').filter((l) => / vx[bvec]-/.test(l))).toEqual([]);
    }
  });
});
