// vxnet on one host, driven by a real dockerd (Debian 12's 20.10 and Debian 13's 26.1), with
// iptables FORWARD at DROP as dockerd leaves it. Each version gets its own simulated host.
import { Host, upHost, downHost } from '../helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../helpers/image';
import { Driver, startDriver, storedKeys } from '../helpers/vxnet-in-host';
import { containerIp, vxLinks } from '../helpers/docker-inspect';

jest.setTimeout(300_000);

const VERSIONS: Array<['20' | '26', string, string]> = [
  ['20', 'vxt-s20', '172.31.254.21'],
  ['26', 'vxt-s26', '172.31.254.22'],
];

describe.each(VERSIONS)('vxnet with dockerd %s', (version, name, ip) => {
  let host: Host;
  let driver: Driver;
  const NET = 'vxt-appnet';
  const img = TEST_IMAGE;


  async function vxRules(): Promise<string[]> {
    const out = await host.execOk(['iptables', '-w', '-S']);
    return out.split('\n').filter((l) => l.includes('vxnet') || l.includes('VXNET'));
  }

  async function runSleeper(cname: string, args: string[] = []): Promise<void> {
    await host.dockerOk(['run', '-d', '--name', cname, '--network', NET, ...args, img, 'sleep', '3600']);
  }

  beforeAll(async () => {
    host = await upHost(name, ip, { docker: version });
    await ensureTestImage(host);
    driver = await startDriver(host);
  });

  afterAll(async () => {
    if (!host) return;
    await host.docker(['rm', '-f', 'ca', 'cb', 'cc', 'cd', 'i1', 'i2', 'mtu']);
    await host.docker(['network', 'rm', NET, 'vxt-internal', 'vxt-auto']);
    await driver?.stop();
    await downHost(host);
  });

  it('runs on a host where dockerd set FORWARD to DROP', async () => {
    expect(await host.execOk(['iptables', '-w', '-S', 'FORWARD'])).toContain('-P FORWARD DROP');
    expect(await host.dockerOk(['version', '--format', '{{.Server.Version}}'])).toMatch(version === '20' ? /^20\.10\./ : /^26\.1\./);
  });

  it('creates a network with every IPAM option', async () => {
    await host.dockerOk([
      'network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet',
      '--subnet', '10.77.0.0/24', '--ip-range', '10.77.0.128/25', '--gateway', '10.77.0.1',
      '--aux-address', 'auxa=10.77.0.5', '-o', 'com.docker.network.driver.mtu=1400', NET,
    ]);
    const inspect = JSON.parse(await host.dockerOk(['network', 'inspect', NET]))[0];
    expect(inspect.Driver).toBe('vxnet');
    expect(inspect.IPAM.Config[0]).toMatchObject({ Subnet: '10.77.0.0/24', IPRange: '10.77.0.128/25', Gateway: '10.77.0.1' });
  });

  it('gives two containers addresses from the ip-range; they ping each other by IP and by name', async () => {
    await runSleeper('ca');
    await runSleeper('cb');
    const ipOf = async (c: string): Promise<string> =>
      containerIp(host, NET, c);
    const [ipa, ipb] = [await ipOf('ca'), await ipOf('cb')];
    // --ip-range 10.77.0.128/25
    for (const ip of [ipa, ipb]) {
      expect(ip).toMatch(/^10\.77\.0\.\d+$/);
      expect(Number(ip.split('.')[3])).toBeGreaterThanOrEqual(128);
    }
    expect(ipa).not.toBe(ipb);
    expect((await host.dockerOk(['exec', 'ca', 'ping', '-c', '2', '-W', '2', ipb]))).toMatch(/2 packets received/);
    expect((await host.dockerOk(['exec', 'cb', 'ping', '-c', '2', '-W', '2', 'ca']))).toMatch(/2 packets received/);
    // The anycast gateway lives on this host's bridge.
    expect((await host.dockerOk(['exec', 'ca', 'ping', '-c', '1', '-W', '2', '10.77.0.1']))).toMatch(/1 packets received/);
    expect(await host.dockerOk(['exec', 'ca', 'ip', 'route'])).toMatch(/default via 10\.77\.0\.1 dev eth0/);
  });

  it('applies the network MTU inside the container', async () => {
    expect(await host.dockerOk(['exec', 'ca', 'cat', '/sys/class/net/eth0/mtu'])).toBe('1400');
    // A full-size frame crosses the bridge.
    const ipb = await containerIp(host, NET, 'cb');
    expect(await host.dockerOk(['exec', 'ca', 'ping', '-c', '1', '-W', '2', '-s', '1372', ipb])).toMatch(/1 packets received/);
  });

  it('honours --ip and refuses the same static address twice with a clear error', async () => {
    await runSleeper('cc', ['--ip', '10.77.0.20']);
    expect(await containerIp(host, NET, 'cc')).toBe('10.77.0.20');
    const dup = await host.docker(['run', '-d', '--name', 'cd', '--network', NET, '--ip', '10.77.0.20', img, 'sleep', '3600']);
    expect(dup.code).not.toBe(0);
    expect(dup.stderr).toMatch(/10\.77\.0\.20 is already in use/);
    await host.docker(['rm', '-f', 'cd']);
  });

  it('survives a driver restart between operations (SIGKILL, then start again)', async () => {
    await driver.stop('SIGKILL');
    driver = await startDriver(host);
    await host.dockerOk(['rm', '-f', 'cc']);
    await runSleeper('cd');
    const ipd = await containerIp(host, NET, 'cd');
    expect(await host.dockerOk(['exec', 'ca', 'ping', '-c', '1', '-W', '2', ipd])).toMatch(/1 packets received/);
    expect(await host.dockerOk(['exec', 'cd', 'ping', '-c', '1', '-W', '2', 'cb'])).toMatch(/1 packets received/);
  });

  it('keeps an --internal network internal: no default route, peers still reachable', async () => {
    await host.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--internal', '--subnet', '10.78.0.0/24', 'vxt-internal']);
    await host.dockerOk(['run', '-d', '--name', 'i1', '--network', 'vxt-internal', img, 'sleep', '3600']);
    await host.dockerOk(['run', '-d', '--name', 'i2', '--network', 'vxt-internal', img, 'sleep', '3600']);
    expect(await host.dockerOk(['exec', 'i1', 'ip', 'route'])).not.toMatch(/default/);
    expect(await host.dockerOk(['exec', 'i1', 'ip', '-o', 'link'])).not.toMatch(/eth1/);
    expect(await host.dockerOk(['exec', 'i1', 'ping', '-c', '1', '-W', '2', 'i2'])).toMatch(/1 packets received/);
    // Nothing from outside the internal network gets in, not even from another vxnet network.
    const i2 = await containerIp(host, 'vxt-internal', 'i2');
    const out = await host.docker(['exec', 'ca', 'ping', '-c', '1', '-W', '1', i2]);
    expect(out.code).not.toBe(0);
  });

  it('chooses a subnet from the default pools when none is given', async () => {
    await host.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', 'vxt-auto']);
    const cfg = JSON.parse(await host.dockerOk(['network', 'inspect', 'vxt-auto']))[0].IPAM.Config[0];
    expect(cfg.Subnet).toMatch(/^10\.(1[2-9]\d|2[0-5]\d)\.\d+\.0\/24$/);
  });

  it('leaves no link, rule or store key behind once containers and networks are removed', async () => {
    await host.dockerOk(['rm', '-f', 'ca', 'cb', 'cd', 'i1', 'i2']);
    await host.dockerOk(['network', 'rm', NET, 'vxt-internal', 'vxt-auto']);
    expect(await vxLinks(host)).toEqual([]);
    // The constant chains stay (they name no bridge); the sets hold no network any more.
    expect((await vxRules()).filter((r) => /vxb-\d/.test(r))).toEqual([]);
    expect((await host.execOk(['ipset', 'save'])).split('\n').filter((l) => l.startsWith('add vxnet-'))).toEqual([]);
    await driver.stop();
    expect(await storedKeys(driver.dataDir)).toEqual([]);
    driver = await startDriver(host);
  });
});
