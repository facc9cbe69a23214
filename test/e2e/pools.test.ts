// Pools for CI runners, through the real docker CLI against dockerd 20.10 and 26.1 on one host
// (embedded store): a subnet size without naming a subnet (--ipam-opt vxnet.subnet-size=N and
// --subnet 0.0.0.0/N), bad sizes refused with the value named, `docker network prune` by label
// and by age leaving no store key or link, and the single-host MTU (no tunnel: no VXLAN overhead,
// jumbo frames allowed as on Docker's bridge).
import { Host, upHost, downHost } from '../helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../helpers/image';
import { Driver, startDriver, storedKeys, MAIN_JS } from '../helpers/vxnet-in-host';
import { containerIp, vxLinks } from '../helpers/docker-inspect';
import { parseCidr, containsIp, parseIp, overlaps, cidrToString, Cidr } from '../../src/ipam/cidr';

jest.setTimeout(300_000);

const VERSIONS: Array<['20' | '26', string, string]> = [
  ['20', 'vxt-q20', '172.31.254.121'],
  ['26', 'vxt-q26', '172.31.254.122'],
];
const DEFAULT_POOL = parseCidr('10.128.0.0/9') as Cidr;
const CREATE = ['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet'];
const NETS = ['vxt-s28', 'vxt-z28', 'vxt-jumbo', 'vxt-job-a1', 'vxt-job-a2', 'vxt-job-b', 'vxt-old', 'vxt-new'];

describe.each(VERSIONS)('pools, prune and MTU with dockerd %s', (version, name, ip) => {
  let host: Host;
  let driver: Driver;

  /** The /N a container on `net` got: its address with the mask dockerd set from the pool. */
  async function containerCidr(net: string): Promise<string> {
    const out = await host.dockerOk(['run', '--rm', '--network', net, TEST_IMAGE, 'ip', '-o', '-4', 'addr', 'show', 'eth0']);
    const m = /inet (\d+\.\d+\.\d+\.\d+\/\d+)/.exec(out);
    if (!m) throw new Error(`no IPv4 address in: ${out}`);
    return m[1];
  }
  async function subnetOf(net: string): Promise<string> {
    return JSON.parse(await host.dockerOk(['network', 'inspect', net]))[0].IPAM.Config[0].Subnet as string;
  }
  async function vxnetNetworks(): Promise<string[]> {
    const s = JSON.parse(await host.execOk([process.execPath, MAIN_JS, 'status', '--json', '--socket', '/run/docker/plugins/vxnet.sock'])) as { networks: Array<{ network: string }> };
    return s.networks.map((n) => n.network).sort();
  }
  const lnetOf = (subnet: string): string => `subnet-${subnet.replace('/', '-')}`;

  beforeAll(async () => {
    host = await upHost(name, ip, { docker: version });
    await ensureTestImage(host);
    driver = await startDriver(host);
  });

  afterAll(async () => {
    if (!host) return;
    await host.docker(['rm', '-f', 'j1', 'j2']);
    await host.docker(['network', 'rm', ...NETS]);
    await driver?.stop();
    await downHost(host);
  });

  it('takes a subnet size from --ipam-opt vxnet.subnet-size and from --subnet 0.0.0.0/28', async () => {
    await host.dockerOk([...CREATE, '--ipam-opt', 'vxnet.subnet-size=28', 'vxt-s28']);
    await host.dockerOk([...CREATE, '--subnet', '0.0.0.0/28', 'vxt-z28']);
    const a = await containerCidr('vxt-s28');
    const b = await containerCidr('vxt-z28');
    expect(a).toMatch(/\/28$/);
    expect(b).toMatch(/\/28$/);
    const [na, nb] = [parseCidr(a) as Cidr, parseCidr(b) as Cidr];
    for (const c of [a, b]) expect(containsIp(DEFAULT_POOL, parseIp(c.split('/')[0]) as { family: 4; value: bigint })).toBe(true);
    expect(overlaps(na, nb)).toBe(false);
    // dockerd reports the subnet vxnet chose for the size-only form; vxnet holds both.
    expect(await subnetOf('vxt-s28')).toBe(cidrToString(na));
    expect(await vxnetNetworks()).toEqual([lnetOf(cidrToString(na)), lnetOf(cidrToString(nb))].sort());
  });

  it.each([
    [['--ipam-opt', 'vxnet.subnet-size=31'], 'vxnet.subnet-size=31: /31 does not fit the default pools'],
    [['--ipam-opt', 'vxnet.subnet-size=abc'], 'IPAM option vxnet.subnet-size="abc" is not a prefix length'],
    [['--subnet', '0.0.0.0/28', '--ipam-opt', 'vxnet.subnet-size=26'], 'subnet 0.0.0.0/28 and vxnet.subnet-size=26 ask for different sizes'],
    [['--subnet', '0.0.0.0/7'], 'subnet 0.0.0.0/7: /7 does not fit the default pools'],
  ])('refuses %j naming the value, and creates nothing', async (args, msg) => {
    const before = await vxnetNetworks();
    const r = await host.docker([...CREATE, ...args, 'vxt-bad']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(msg);
    expect(await host.dockerOk(['network', 'ls', '--format', '{{.Name}}'])).not.toContain('vxt-bad');
    expect(await vxnetNetworks()).toEqual(before);
  });

  it('gives a single-host network the interface MTU by default and jumbo frames when asked (no tunnel, no -50)', async () => {
    const dev = (await host.execOk(['ip', 'route', 'show', 'default'])).match(/dev (\S+)/)?.[1];
    const expected = dev ? await host.execOk(['cat', `/sys/class/net/${dev}/mtu`]) : '1500';
    expect(await host.dockerOk(['run', '--rm', '--network', 'vxt-s28', TEST_IMAGE, 'cat', '/sys/class/net/eth0/mtu'])).toBe(expected);
    await host.dockerOk([...CREATE, '--ipam-opt', 'vxnet.subnet-size=29', '-o', 'com.docker.network.driver.mtu=9000', 'vxt-jumbo']);
    await host.dockerOk(['run', '-d', '--name', 'j1', '--network', 'vxt-jumbo', TEST_IMAGE, 'sleep', '3600']);
    await host.dockerOk(['run', '-d', '--name', 'j2', '--network', 'vxt-jumbo', TEST_IMAGE, 'sleep', '3600']);
    expect(await host.dockerOk(['exec', 'j1', 'cat', '/sys/class/net/eth0/mtu'])).toBe('9000');
    // 8972 + 28 bytes of headers = one 9000-byte frame each way.
    expect(await host.dockerOk(['exec', 'j1', 'ping', '-c', '2', '-W', '2', '-s', '8972', await containerIp(host, 'vxt-jumbo', 'j2')])).toMatch(/2 packets received/);
    const r = await host.docker([...CREATE, '-o', 'com.docker.network.driver.mtu=65536', 'vxt-bad']);
    expect(r.stderr).toContain('option com.docker.network.driver.mtu=65536 is outside 576..65535');
    await host.dockerOk(['rm', '-f', 'j1', 'j2']);
  });

  it('docker network prune --filter label=… removes exactly the labelled vxnet networks and their store records', async () => {
    await host.dockerOk([...CREATE, '--label', 'ci-job=a', 'vxt-job-a1']);
    await host.dockerOk([...CREATE, '--label', 'ci-job=a', '--ipam-opt', 'vxnet.subnet-size=27', 'vxt-job-a2']);
    await host.dockerOk([...CREATE, '--label', 'ci-job=b', 'vxt-job-b']);
    const lnets = Object.fromEntries(await Promise.all(['vxt-job-a1', 'vxt-job-a2', 'vxt-job-b'].map(async (n) => [n, lnetOf(await subnetOf(n))])));
    const out = await host.dockerOk(['network', 'prune', '-f', '--filter', 'label=ci-job=a']);
    expect(out.split('\n').filter((l) => l.startsWith('vxt-')).sort()).toEqual(['vxt-job-a1', 'vxt-job-a2']);
    const left = (await host.dockerOk(['network', 'ls', '--format', '{{.Name}}'])).split('\n');
    expect(left).toEqual(expect.arrayContaining(['vxt-job-b', 'vxt-s28', 'vxt-z28', 'vxt-jumbo']));
    expect(left).not.toContain('vxt-job-a1');
    const known = await vxnetNetworks();
    expect(known).toContain(lnets['vxt-job-b']);
    expect(known).not.toContain(lnets['vxt-job-a1']);
    expect(known).not.toContain(lnets['vxt-job-a2']);
  });

  it('docker network prune --filter until=… removes vxnet networks older than the time, and nothing is left at the end', async () => {
    await host.dockerOk(['network', 'rm', 'vxt-s28', 'vxt-z28', 'vxt-jumbo', 'vxt-job-b']);
    await host.dockerOk([...CREATE, 'vxt-old']);
    // dockerd keeps creation times in nanoseconds; until takes seconds: leave a clear second between.
    await new Promise((r) => setTimeout(r, 1500));
    const cut = Math.floor(Date.now() / 1000);
    await new Promise((r) => setTimeout(r, 1500));
    await host.dockerOk([...CREATE, 'vxt-new']);
    const newLnet = lnetOf(await subnetOf('vxt-new'));
    const out = await host.dockerOk(['network', 'prune', '-f', '--filter', `until=${cut}`]);
    expect(out.split('\n').filter((l) => l.startsWith('vxt-'))).toEqual(['vxt-old']);
    expect(await vxnetNetworks()).toEqual([newLnet]);
    await host.dockerOk(['network', 'rm', 'vxt-new']);
    expect(await vxLinks(host)).toEqual([]);
    await driver.stop();
    expect(await storedKeys(driver.dataDir)).toEqual([]);
    driver = await startDriver(host);
  });
});
