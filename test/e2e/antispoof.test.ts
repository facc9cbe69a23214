// Anti-spoofing (table bridge vxnet-antispoof) on real dockerds 20.10 and 26.1, on one host and
// across two hosts over etcd: a container with NET_ADMIN that takes another container's IP, then
// its MAC too, reaches nothing and poisons no ARP cache, while honest containers keep working;
// Leave removes a port's entries; the kernel keeps enforcing while the driver is killed (-9).
// Traffic goes only to containers this test made.
import * as fs from 'node:fs';
import { Host, upHost, downHost } from '../helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../helpers/image';
import { Driver, startDriver } from '../helpers/vxnet-in-host';
import { HostEtcd, startEtcdInHost } from '../helpers/etcd-in-host';
import { containerIp } from '../helpers/docker-inspect';
import { eventually } from '../helpers/eventually';

jest.setTimeout(240_000);

const NET = { name: 'vxt-spoof', subnet: '10.98.5.0/24' };
const TCP_PORT = '8000';
const METRICS_ADDR = '127.0.0.1:9477';
const SCRAPE = `fetch('http://${METRICS_ADDR}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t), (e) => { console.error(e); process.exit(1); })`;

interface Box {
  ip: string;
  mac: string;
  endpoint: string;
}

async function box(h: Host, name: string, extra: string[] = []): Promise<Box> {
  await h.dockerOk(['run', '-d', '--name', name, '--network', NET.name, ...extra, TEST_IMAGE, 'sleep', '3600']);
  // A TCP server answering every connection (busybox nc serves one per run: loop it).
  await h.dockerOk(['exec', '-d', name, 'sh', '-c', `while true; do echo ok | nc -l -p ${TCP_PORT}; done`]);
  return {
    ip: await containerIp(h, NET.name, name),
    mac: await containerIp(h, NET.name, name, 'MacAddress'),
    endpoint: await h.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${NET.name}").EndpointID}}`, name]),
  };
}

async function pings(h: Host, c: string, ip: string): Promise<boolean> {
  return (await h.docker(['exec', c, 'ping', '-c', '2', '-W', '1', ip], { timeoutMs: 15_000 })).code === 0;
}

async function tcp(h: Host, c: string, ip: string): Promise<boolean> {
  const r = await h.docker(['exec', c, 'sh', '-c', `timeout 3 nc ${ip} ${TCP_PORT} </dev/null`], { timeoutMs: 15_000 });
  return r.code === 0 && r.stdout.includes('ok');
}

/** The MAC container c's neighbour table holds for ip ('' when none). */
async function neighMac(h: Host, c: string, ip: string): Promise<string> {
  const out = (await h.docker(['exec', c, 'ip', 'neigh', 'show', ip])).stdout;
  return /lladdr (\S+)/.exec(out)?.[1] ?? '';
}

async function spoofSet(h: Host, set: string): Promise<string> {
  return h.execOk(['nft', 'list', 'set', 'bridge', 'vxnet-antispoof', set]);
}

async function dropped(h: Host): Promise<number> {
  const text = await h.execOk([process.execPath, '-e', SCRAPE]);
  return Number(/\nvxnet_antispoof_dropped_frames_total (\d+)/.exec(text)?.[1] ?? NaN);
}

describe('anti-spoofing (etcd, dockerd 20.10 and 26.1)', () => {
  let etcdHost: Host;
  let etcd: HostEtcd;
  const hosts: Host[] = [];
  const drivers: Driver[] = [];
  const env = (): Record<string, string> => ({ VXNET_STORE: 'etcd', VXNET_ETCD_ENDPOINTS: etcd.endpoint, VXNET_VTEP_INTERFACE: 'eth0', VXNET_METRICS_ADDR: METRICS_ADDR });
  // Honest containers: p1 on host 1, p2 on host 2.
  const p: Record<number, Box> = {};

  beforeAll(async () => {
    etcdHost = await upHost('vxt-s0', '172.31.254.130', { docker: null });
    etcd = await startEtcdInHost(etcdHost);
    for (const [i, v] of [[1, '20'], [2, '26']] as const) {
      const h = await upHost(`vxt-s${i}`, `172.31.254.13${i}`, { docker: v });
      await ensureTestImage(h);
      hosts.push(h);
      drivers.push(await startDriver(h, env()));
    }
    for (const [i, h] of hosts.entries()) {
      await h.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', NET.subnet, NET.name]);
      p[i + 1] = await box(h, `p${i + 1}`);
    }
  });

  afterAll(async () => {
    for (const h of hosts) {
      await h.docker(['rm', '-f', 'p1', 'p2', 'q1', 'q2', 'x1', 'x2']);
      await h.docker(['network', 'rm', NET.name]);
    }
    for (const d of drivers) await d.stop();
    await etcd?.stop();
    for (const h of [...hosts, etcdHost]) if (h) await downHost(h);
  });

  describe.each([
    ['20.10', 0],
    ['26.1', 1],
  ])('on dockerd %s', (_v, idx) => {
    const n = idx + 1;
    const other = 3 - n;
    const h = (): Host => hosts[idx];
    const ho = (): Host => hosts[other - 1];
    let x: Box;
    let q: Box;

    it("a container's port carries its own MAC and addresses; honest containers reach each other on one host and across hosts", async () => {
      q = await box(h(), `q${n}`);
      x = await box(h(), `x${n}`, ['--cap-add', 'NET_ADMIN']);
      const port = `vxe-${x.endpoint.slice(0, 10)}`;
      expect(await spoofSet(h(), 'v4')).toContain(`"${port}" . ${x.mac} . ${x.ip}`);
      expect(await spoofSet(h(), 'arp4')).toContain(`"${port}" . ${x.mac} . ${x.mac} . ${x.ip}`);
      // The attacker-to-be is an ordinary container until it changes its address.
      for (const [c, target] of [[`x${n}`, q.ip], [`x${n}`, p[other].ip], [`q${n}`, p[n].ip], [`q${n}`, p[other].ip]]) {
        expect(await pings(h(), c, target)).toBe(true);
        expect(await tcp(h(), c, target)).toBe(true);
      }
    });

    it("takes another container's IP: reaches nothing, on this host or the other; poisons no ARP cache", async () => {
      const before = await dropped(h());
      // q learns p(n)'s MAC, p(other) learns q's; then wait out the kernel's ARP locktime (1 s),
      // after which an unsolicited ARP would replace the entry if it got through.
      expect(await pings(h(), `q${n}`, p[n].ip)).toBe(true);
      expect(await pings(ho(), `p${other}`, q.ip)).toBe(true);
      await new Promise((r) => setTimeout(r, 1500));
      await h().dockerOk(['exec', `x${n}`, 'sh', '-c', `ip addr flush dev eth0 && ip addr add ${p[n].ip}/24 dev eth0`]);
      // Gratuitous ARP claiming p(n)'s address, then q's, with x's MAC.
      await h().docker(['exec', `x${n}`, 'arping', '-U', '-c', '2', '-I', 'eth0', '-s', p[n].ip, p[n].ip], { timeoutMs: 15_000 });
      await h().dockerOk(['exec', `x${n}`, 'sh', '-c', `ip addr add ${q.ip}/32 dev eth0`]);
      await h().docker(['exec', `x${n}`, 'arping', '-U', '-c', '2', '-I', 'eth0', '-s', q.ip, q.ip], { timeoutMs: 15_000 });
      // Not kept: a ping to q's address would stay inside x.
      await h().dockerOk(['exec', `x${n}`, 'sh', '-c', `ip addr del ${q.ip}/32 dev eth0`]);
      expect(await neighMac(h(), `q${n}`, p[n].ip)).toBe(p[n].mac);
      expect(await neighMac(ho(), `p${other}`, q.ip)).toBe(q.mac);
      for (const target of [q.ip, p[other].ip]) {
        expect(await pings(h(), `x${n}`, target)).toBe(false);
        expect(await tcp(h(), `x${n}`, target)).toBe(false);
      }
      // The honest ones still reach the address x tried to take, wherever they are.
      expect(await pings(h(), `q${n}`, p[n].ip)).toBe(true);
      expect(await tcp(ho(), `p${other}`, p[n].ip)).toBe(true);
      expect(await tcp(ho(), `p${other}`, q.ip)).toBe(true);
      expect(await dropped(h())).toBeGreaterThan(before);
    });

    it("then its MAC too: still nothing, and the real owner keeps its traffic", async () => {
      await h().dockerOk(['exec', `x${n}`, 'sh', '-c', `ip link set eth0 down && ip link set eth0 address ${p[n].mac} && ip link set eth0 up && ip addr flush dev eth0 && ip addr add ${p[n].ip}/24 dev eth0`]);
      await h().docker(['exec', `x${n}`, 'arping', '-U', '-c', '2', '-I', 'eth0', '-s', p[n].ip, p[n].ip], { timeoutMs: 15_000 });
      for (const target of [q.ip, p[other].ip]) {
        expect(await pings(h(), `x${n}`, target)).toBe(false);
        expect(await tcp(h(), `x${n}`, target)).toBe(false);
      }
      // The bridge never learned p(n)'s MAC on x's port: p(n) still gets its own frames.
      expect(await tcp(h(), `q${n}`, p[n].ip)).toBe(true);
      expect(await tcp(ho(), `p${other}`, p[n].ip)).toBe(true);
      expect(await neighMac(h(), `q${n}`, p[n].ip)).toBe(p[n].mac);
    });

    it('the kernel keeps enforcing while the driver is killed (-9); reconcile at start keeps the entries', async () => {
      const v4Before = await spoofSet(h(), 'v4');
      await drivers[idx].stop('SIGKILL');
      expect(await spoofSet(h(), 'v4')).toBe(v4Before);
      expect(await pings(h(), `x${n}`, q.ip)).toBe(false);
      expect(await tcp(h(), `q${n}`, p[other].ip)).toBe(true);
      drivers[idx] = await startDriver(h(), env());
      await eventually('start-up reconcile done', () => fs.readFileSync(drivers[idx].logFile, 'utf8').includes('reconcile done'), 30_000, 200);
      expect(await spoofSet(h(), 'v4')).toBe(v4Before);
      expect(await tcp(h(), `q${n}`, p[other].ip)).toBe(true);
    });

    it("Leave removes the port's entries; the others stay", async () => {
      const port = `vxe-${x.endpoint.slice(0, 10)}`;
      await h().dockerOk(['rm', '-f', `x${n}`]);
      for (const set of ['v4', 'arp4', 'v6', 'nd6']) expect(await spoofSet(h(), set)).not.toContain(port);
      expect(await spoofSet(h(), 'v4')).toContain(`"vxe-${q.endpoint.slice(0, 10)}" . ${q.mac} . ${q.ip}`);
      expect(await tcp(h(), `q${n}`, p[other].ip)).toBe(true);
    });
  });
});
