// `vxnet doctor` on two real dockerd hosts sharing etcd, run inside vxt-q1 with the settings its
// driver runs with: a healthy pair passes every check; a peer whose underlay MTU shrinks fails
// the DF probe, which names the host and the MTU to lower.
import { Host, downHost, upHost } from '../helpers/hosts';
import { HostEtcd, startEtcdInHost } from '../helpers/etcd-in-host';
import { Driver, MAIN_JS, startDriver } from '../helpers/vxnet-in-host';
import { cliEnv } from '../helpers/vxnet-cli';
import type { CheckResult } from '../../src/doctor';

jest.setTimeout(300_000);

describe('vxnet doctor across hosts', () => {
  const hosts: Host[] = [];
  const drivers: Driver[] = [];
  let etcd: HostEtcd;
  let settings: Record<string, string>;

  beforeAll(async () => {
    hosts.push(await upHost('vxt-q1', '172.31.254.96', { docker: '20' }));
    hosts.push(await upHost('vxt-q2', '172.31.254.97', { docker: '20' }));
    etcd = await startEtcdInHost(hosts[0]);
    settings = { VXNET_STORE: 'etcd', VXNET_ETCD_ENDPOINTS: etcd.endpoint, VXNET_VTEP_INTERFACE: 'eth0' };
    for (const h of hosts) drivers.push(await startDriver(h, settings));
  });

  afterAll(async () => {
    for (const d of drivers) await d.stop();
    await etcd?.stop();
    for (const h of hosts) await downHost(h);
  });

  async function doctor(h: Host, args: string[] = ['--json']): Promise<{ code: number | null; stdout: string }> {
    const env = cliEnv({ ...settings, VXNET_HOST_ID: h.name });
    const r = await h.exec([process.execPath, MAIN_JS, 'doctor', ...args], { env, timeoutMs: 60_000 });
    return { code: r.code, stdout: r.stdout };
  }

  async function checks(h: Host): Promise<Record<string, CheckResult>> {
    const { stdout } = await doctor(h);
    return Object.fromEntries((JSON.parse(stdout).checks as CheckResult[]).map((c) => [c.name, c]));
  }

  it('passes every check on a healthy host', async () => {
    const r = await doctor(hosts[0], []);
    console.log(`vxnet doctor in vxt-q1:\n${r.stdout}`);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(/^(FAIL|WARN) /m);
    const c = await checks(hosts[0]);
    expect(c.vtep.detail).toBe('172.31.254.96 on eth0');
    expect(c['vtep-path'].detail).toContain('1 host(s) answer 1500-byte packets');
    expect(c.dockerd.detail).toMatch(/^dockerd 20\.10\.\S+ \(API 1\.41\)/);
    expect(c.socket.detail).toContain('/run/docker/plugins/vxnet.sock (NetworkDriver, IpamDriver), owner root, mode 0600');
  });

  it('fails the DF probe when the path to a host is narrower than the overlay needs', async () => {
    await hosts[1].execOk(['ip', 'link', 'set', 'eth0', 'mtu', '1400']);
    try {
      const c = await checks(hosts[0]);
      expect(c['vtep-path']).toMatchObject({
        status: 'FAIL',
        detail: expect.stringContaining('vxt-q2 (172.31.254.97) answer small pings but not 1500-byte packets'),
      });
    } finally {
      await hosts[1].execOk(['ip', 'link', 'set', 'eth0', 'mtu', '1500']);
    }
  });
});
