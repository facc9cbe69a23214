// Names across hosts on hosts whose resolv.conf names only a loopback resolver (dnsmasq- or
// NetworkManager-style 127.0.1.1), dockerd 26.1 (l1) and 20.10 (l2), no dockerd dns setting.
// There Docker never forwards through vxnet's bridge (26.1 queries the loopback server from the
// host's namespace; 20.10 falls back to 8.8.8.8/8.8.4.4), so only vxnet's rules in the
// containers' namespaces bring their queries to vxnet. Each host's loopback resolver is a
// dnsmasq in that host's own namespace answering one name; nothing leaves the test's namespaces
// (the hosts have no route out, so 20.10's public fallback is unreachable and never asked here).
//
// 127.0.0.53 itself is not used: both dockerds then read /run/systemd/resolve/resolv.conf
// (systemd-resolved's real upstreams) instead, i.e. an ordinary non-loopback host.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Host, upHost, downHost, startInHost } from '../helpers/hosts';
import { eventually } from '../helpers/eventually';
import { ensureTestImage, TEST_IMAGE } from '../helpers/image';
import { Driver, startDriver, MAIN_JS } from '../helpers/vxnet-in-host';
import { HostEtcd, startEtcdInHost } from '../helpers/etcd-in-host';
import { containerIp } from '../helpers/docker-inspect';
import { cliEnv } from '../helpers/vxnet-cli';
import { nslookupA } from '../helpers/nslookup';

jest.setTimeout(300_000);

const NET = 'vxt-lnames';
const LOOPBACK_DNS = '127.0.1.1';
const OUTSIDE_NAME = 'outside.test';
const OUTSIDE_ADDR = '172.31.254.77';

describe('names across hosts on loopback-resolver hosts (dockerd 26.1 and 20.10)', () => {
  let etcdHost: Host;
  let etcd: HostEtcd;
  const hosts: Host[] = [];
  const drivers: Driver[] = [];
  const env = (): Record<string, string> => ({ VXNET_STORE: 'etcd', VXNET_ETCD_ENDPOINTS: etcd.endpoint, VXNET_VTEP_INTERFACE: 'eth0' });

  beforeAll(async () => {
    etcdHost = await upHost('vxt-l0', '172.31.254.100', { docker: null });
    etcd = await startEtcdInHost(etcdHost);
    for (const [i, v] of (['26', '20'] as const).entries()) {
      const h = await upHost(`vxt-l${i + 1}`, `172.31.254.10${i + 1}`, { docker: v });
      hosts.push(h);
      // The host's own resolver, on its loopback, in its own namespaces (mount: private to the host).
      const conf = path.join(h.stateDir, 'resolv.loopback');
      fs.writeFileSync(conf, `nameserver ${LOOPBACK_DNS}\noptions edns0\n`);
      await h.execOk(['mount', '--bind', conf, '/etc/resolv.conf']);
      startInHost(h, 'dnsmasq', ['-k', '--no-resolv', '--no-hosts', `--listen-address=${LOOPBACK_DNS}`, '--bind-interfaces', `--address=/${OUTSIDE_NAME}/${OUTSIDE_ADDR}`,
        `--pid-file=${path.join(h.stateDir, 'dnsmasq.pid')}`, '--user=root']);
      await ensureTestImage(h);
      drivers.push(await startDriver(h, env()));
      await h.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', '10.95.0.0/24', '--gateway', '10.95.0.1', NET]);
    }
    const [l1, l2] = hosts;
    await l1.dockerOk(['run', '-d', '--name', 'web1', '--network', NET, '--network-alias', 'api', TEST_IMAGE, 'sleep', '3600']);
    await l2.dockerOk(['run', '-d', '--name', 'web2', '--network', NET, '--network-alias', 'api', TEST_IMAGE, 'sleep', '3600']);
    await l1.dockerOk(['run', '-d', '--name', 'c1', '--network', NET, TEST_IMAGE, 'sleep', '3600']);
    await l2.dockerOk(['run', '-d', '--name', 'c2', '--network', NET, TEST_IMAGE, 'sleep', '3600']);
  });

  afterAll(async () => {
    for (const h of hosts) {
      await h.docker(['rm', '-f', 'web1', 'web2', 'c1', 'c2']);
      await h.docker(['network', 'rm', NET]);
    }
    for (const d of drivers) await d.stop();
    await etcd?.stop();
    for (const h of hosts) await downHost(h);
    if (etcdHost) await downHost(etcdHost);
  });

  it('resolves names of the other host, and a shared alias with every address in rotating order', async () => {
    const [l1, l2] = hosts;
    const web1 = await containerIp(l1, NET, 'web1');
    const web2 = await containerIp(l2, NET, 'web2');
    await eventually('web1 visible on l2', async () => (await nslookupA(l2, 'c2', 'web1')).includes(web1), 5000, 100);
    expect(await nslookupA(l1, 'c1', 'web2')).toEqual([web2]);
    expect(await l2.dockerOk(['exec', 'c2', 'ping', '-c', '1', '-W', '2', 'web1'])).toMatch(/1 packets received/);
    for (const [h, c] of [[l1, 'c1'], [l2, 'c2']] as const) {
      const first = await nslookupA(h, c, 'api');
      expect([...first].sort()).toEqual([web1, web2].sort());
      expect(await nslookupA(h, c, 'api')).toEqual([...first].reverse());
    }
  });

  it('leaves outside names to Docker: dockerd 26.1 still asks the loopback resolver', async () => {
    expect(await nslookupA(hosts[0], 'c1', OUTSIDE_NAME)).toEqual([OUTSIDE_ADDR]);
  });

  it('`vxnet doctor` names the loopback resolver and what to set', async () => {
    const r = await hosts[0].exec([process.execPath, MAIN_JS, 'doctor', '--json'], { env: cliEnv({ VXNET_HOST_ID: hosts[0].name, VXNET_DATA_DIR: path.join(hosts[0].stateDir, 'doctor-data') }), timeoutMs: 90_000 });
    const check = (JSON.parse(r.stdout).checks as Array<{ name: string; status: string; detail: string; fix?: string }>).find((c) => c.name === 'names-dns');
    expect(check).toMatchObject({ status: 'WARN', detail: expect.stringContaining(`loopback only (${LOOPBACK_DNS})`), fix: expect.stringContaining('"dns": ["<your LAN resolver>"]') });
  });
});
