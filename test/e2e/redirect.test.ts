// `--fast-path redirect` on two hosts with dockerd 20.10 and a shared etcd: frames between a
// container and one on the other host go between its port and the VXLAN device through the
// network's tc block (dataplane/redirect-block.ts), not through the bridge and the host's
// firewall. What must still hold: anti-spoofing (a spoofed source never matches the block and
// meets the bridge's table), isolation and policy (policed containers get no entry), Leave and
// removal (nothing left behind), a crash (kill -9: a start takes the blocks away and rebuilds
// them), turning the option off (a start without it removes the blocks), and `auto` (suspended
// while a rule of the user's in DOCKER-USER would not see the frames).
import { Host, upHost, downHost } from '../helpers/hosts';
import { eventually } from '../helpers/eventually';
import { ensureTestImage, TEST_IMAGE } from '../helpers/image';
import { Driver, startDriver } from '../helpers/vxnet-in-host';
import { HostEtcd, startEtcdInHost } from '../helpers/etcd-in-host';
import { containerIp } from '../helpers/docker-inspect';
import { scrapeMetric } from '../helpers/metrics';

jest.setTimeout(300_000);

const NET = { name: 'vxt-redir', subnet: '10.104.0.0/24' };
const ISO = { name: 'vxt-redir-iso', subnet: '10.104.1.0/24' };
const SPOOFED = '10.104.0.250';
const METRICS_ADDR = '127.0.0.1:9477';

interface Box {
  ip: string;
  mac: string;
  port: string;
}

/** One filter of `tc -s filter show block N`: its table (800 root, 3 ports, 1 remote, 2 local) and what it names. */
interface Filter {
  table: string;
  text: string;
  packets: number;
}

async function filters(h: Host, vni: number): Promise<Filter[]> {
  const r = await h.exec(['tc', '-s', 'filter', 'show', 'block', String(vni)]);
  if (r.code !== 0) return [];
  return r.stdout
    .split(/\n(?=filter )/)
    .map((text) => ({ table: /fh ([0-9a-f]+):[0-9a-f]*:[0-9a-f]+ /.exec(text)?.[1] ?? '', text, packets: Number(/Sent \d+ bytes (\d+) pkt/.exec(text)?.[1] ?? 0) }))
    .filter((f) => f.table !== '');
}

/** Packets redirected by the entries of one table that name `what` (a MAC's last bytes or a device). */
async function redirected(h: Host, vni: number, table: '1' | '2', dev: string): Promise<number> {
  return (await filters(h, vni)).filter((f) => f.table === table && f.text.includes(`to device ${dev})`)).reduce((a, f) => a + f.packets, 0);
}

/** u32 prints a MAC match as two words: the first two bytes at -16, the last four at -12. */
function macWords(mac: string): string {
  const hex = mac.replace(/:/g, '');
  return `match ${hex.slice(4)}/ffffffff at -12`;
}

async function hasEntries(h: Host, vni: number, own: Box, remote: Box): Promise<boolean> {
  const f = await filters(h, vni);
  const root = f.some((x) => x.table === '3' && x.text.includes(`input dev ${own.port}`));
  const local = f.some((x) => x.table === '2' && x.text.includes(macWords(own.mac)) && x.text.includes(`to device ${own.port})`));
  const rem = f.some((x) => x.table === '1' && x.text.includes(macWords(remote.mac)) && x.text.includes(`to device vxv-${vni})`));
  return root && local && rem;
}

async function antispoofDropped(h: Host): Promise<number> {
  return Number(/packets (\d+)/.exec(await h.execOk(['nft', 'list', 'counter', 'bridge', 'vxnet-antispoof', 'dropped']))?.[1] ?? NaN);
}

describe('--fast-path redirect across two dockerd hosts (etcd)', () => {
  let etcdHost: Host;
  let etcd: HostEtcd;
  const hosts: Host[] = [];
  const drivers: Driver[] = [];
  const env = (): Record<string, string> => ({ VXNET_STORE: 'etcd', VXNET_ETCD_ENDPOINTS: etcd.endpoint, VXNET_VTEP_INTERFACE: 'eth0', VXNET_FAST_PATH: 'redirect', VXNET_METRICS_ADDR: METRICS_ADDR });
  let r1: Box;
  let r2: Box;
  let vni = 0;

  async function box(h: Host, name: string, net: string, extra: string[] = []): Promise<Box> {
    await h.dockerOk(['run', '-d', '--name', name, '--network', net, ...extra, TEST_IMAGE, 'sleep', '3600']);
    const endpoint = await h.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").EndpointID}}`, name]);
    return { ip: await containerIp(h, net, name), mac: await containerIp(h, net, name, 'MacAddress'), port: `vxe-${endpoint.slice(0, 10)}` };
  }

  async function vniOf(h: Host, b: Box): Promise<number> {
    const [link] = JSON.parse(await h.execOk(['ip', '-j', 'link', 'show', 'dev', b.port])) as Array<{ master: string }>;
    return Number(link.master.replace('vxb-', ''));
  }

  async function pings(h: Host, c: string, ip: string, n = 2, extra: string[] = []): Promise<boolean> {
    return (await h.docker(['exec', c, 'ping', '-c', String(n), '-W', '1', ...extra, ip], { timeoutMs: 20_000 })).code === 0;
  }

  beforeAll(async () => {
    etcdHost = await upHost('vxt-rd0', '172.31.254.230', { docker: null });
    etcd = await startEtcdInHost(etcdHost);
    for (let i = 1; i <= 2; i++) {
      const h = await upHost(`vxt-rd${i}`, `172.31.254.23${i}`, { docker: '20' });
      await ensureTestImage(h);
      hosts.push(h);
      drivers.push(await startDriver(h, env()));
    }
  });

  afterAll(async () => {
    for (const h of hosts) {
      await h.docker(['rm', '-f', 'r1', 'r2', 'i1', 'i2']);
      await h.docker(['network', 'rm', NET.name, ISO.name]);
    }
    for (const d of drivers) await d.stop();
    await etcd?.stop();
    for (const h of hosts) await downHost(h);
    if (etcdHost) await downHost(etcdHost);
  });

  it("programs each host's block (its container's port and MAC, the other host's MAC) and pings across hosts take it", async () => {
    for (const h of hosts) await h.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', NET.subnet, NET.name]);
    r1 = await box(hosts[0], 'r1', NET.name, ['--cap-add', 'NET_ADMIN']);
    r2 = await box(hosts[1], 'r2', NET.name);
    vni = await vniOf(hosts[0], r1);
    expect(await vniOf(hosts[1], r2)).toBe(vni);
    await eventually('both blocks programmed', async () => (await hasEntries(hosts[0], vni, r1, r2)) && (await hasEntries(hosts[1], vni, r2, r1)), 10_000, 100);
    // What each driver reports of its block: its own container's port and the other's MAC.
    for (const h of hosts) {
      expect(await scrapeMetric(h, METRICS_ADDR, 'vxnet_redirect_entries{network="subnet-10.104.0.0-24",kind="port"}')).toBe(1);
      expect(await scrapeMetric(h, METRICS_ADDR, 'vxnet_redirect_entries{network="subnet-10.104.0.0-24",kind="remote"}')).toBe(1);
    }
    const out1 = await redirected(hosts[0], vni, '1', `vxv-${vni}`);
    const in2 = await redirected(hosts[1], vni, '2', r2.port);
    expect(await pings(hosts[0], 'r1', r2.ip, 5)).toBe(true);
    // Each request left host1 through the remote table and reached r2 through host2's local one.
    expect(await redirected(hosts[0], vni, '1', `vxv-${vni}`)).toBeGreaterThanOrEqual(out1 + 5);
    expect(await redirected(hosts[1], vni, '2', r2.port)).toBeGreaterThanOrEqual(in2 + 5);
    // The gateway (the host) is reached through the bridge, as before.
    expect(await pings(hosts[0], 'r1', '10.104.0.1')).toBe(true);
  });

  it('a spoofed source never takes the redirect: the anti-spoofing table drops it', async () => {
    // r1 has r2's MAC in its ARP cache now, so the spoofed pings go out as IP frames at once.
    expect(await pings(hosts[0], 'r1', r2.ip)).toBe(true);
    const out = await redirected(hosts[0], vni, '1', `vxv-${vni}`);
    const drops = await antispoofDropped(hosts[0]);
    await hosts[0].dockerOk(['exec', 'r1', 'ip', 'addr', 'add', `${SPOOFED}/32`, 'dev', 'eth0']);
    try {
      expect(await pings(hosts[0], 'r1', r2.ip, 3, ['-I', SPOOFED])).toBe(false);
    } finally {
      await hosts[0].dockerOk(['exec', 'r1', 'ip', 'addr', 'del', `${SPOOFED}/32`, 'dev', 'eth0']);
    }
    expect(await redirected(hosts[0], vni, '1', `vxv-${vni}`)).toBe(out);
    expect(await antispoofDropped(hosts[0])).toBeGreaterThanOrEqual(drops + 3);
    expect(await pings(hosts[0], 'r1', r2.ip)).toBe(true);
  });

  it('an isolated network (enable_icc=false) gets no container entry: its policy still decides', async () => {
    for (const h of hosts) await h.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', ISO.subnet, '-o', 'com.docker.network.bridge.enable_icc=false', ISO.name]);
    const i1 = await box(hosts[0], 'i1', ISO.name);
    const i2 = await box(hosts[1], 'i2', ISO.name);
    const iso = await vniOf(hosts[0], i1);
    // The block is there (its VXLAN device's root entry), without either container.
    await eventually('isolated block set up', async () => (await filters(hosts[0], iso)).some((f) => f.table === '800' && f.text.includes(`input dev vxv-${iso}`)), 10_000, 100);
    expect(await pings(hosts[0], 'i1', i2.ip)).toBe(false);
    for (const [h, own] of [[hosts[0], i1], [hosts[1], i2]] as const) {
      const f = await filters(h, iso);
      expect(f.some((x) => x.text.includes(own.port))).toBe(false);
      expect(f.some((x) => x.text.includes(macWords(own.mac)))).toBe(false);
    }
  });

  it('the path keeps working while the driver is killed (-9); at the next start its blocks are rebuilt', async () => {
    await drivers[0].stop('SIGKILL');
    const down = await redirected(hosts[0], vni, '1', `vxv-${vni}`);
    expect(await pings(hosts[0], 'r1', r2.ip, 3)).toBe(true);
    const before = await redirected(hosts[0], vni, '1', `vxv-${vni}`);
    expect(before).toBeGreaterThanOrEqual(down + 3);
    drivers[0] = await startDriver(hosts[0], env());
    // Rebuilt entries count from zero.
    await eventually('host1 block rebuilt', async () => (await hasEntries(hosts[0], vni, r1, r2)) && (await redirected(hosts[0], vni, '1', `vxv-${vni}`)) < before, 20_000, 200);
    // A round of pings that met a rebuild (counters from zero again) is taken again. A reconcile
    // rebuilds only a block whose VXLAN device was replaced, so this is the rare case now.
    await eventually('pings take the rebuilt block', async () => {
      const out = await redirected(hosts[0], vni, '1', `vxv-${vni}`);
      expect(await pings(hosts[0], 'r1', r2.ip, 3)).toBe(true);
      return (await redirected(hosts[0], vni, '1', `vxv-${vni}`)) >= out + 3;
    }, 20_000, 500);
  });

  it('a restart with --fast-path on takes the blocks away (no entry outlives the option); back to redirect rebuilds them', async () => {
    await drivers[0].stop();
    drivers[0] = await startDriver(hosts[0], { ...env(), VXNET_FAST_PATH: 'on' });
    await eventually('host1 blocks detached', async () => !(await hosts[0].execOk(['tc', 'qdisc', 'show'])).includes('ingress_block'), 20_000, 200);
    expect(await filters(hosts[0], vni)).toEqual([]);
    expect(await pings(hosts[0], 'r1', r2.ip, 2)).toBe(true);
    await drivers[0].stop();
    drivers[0] = await startDriver(hosts[0], env());
    await eventually('host1 block rebuilt', () => hasEntries(hosts[0], vni, r1, r2), 20_000, 200);
  });

  it("--fast-path auto redirects while no rule of the user's sees the frames; one inserted into DOCKER-USER suspends it at once and applies, its removal brings the blocks back", async () => {
    const active = (): Promise<number | undefined> => scrapeMetric(hosts[0], METRICS_ADDR, 'vxnet_redirect_active');
    const rule = ['DOCKER-USER', '-s', `${r1.ip}/32`, '-d', `${r2.ip}/32`, '-j', 'DROP'];
    await drivers[0].stop();
    drivers[0] = await startDriver(hosts[0], { ...env(), VXNET_FAST_PATH: 'auto' });
    try {
      // dockerd's DOCKER-USER holds only vxnet's jump and its RETURN: redirected.
      await eventually('host1 redirecting', async () => (await hasEntries(hosts[0], vni, r1, r2)) && (await active()) === 1, 20_000, 200);
      const out = await redirected(hosts[0], vni, '1', `vxv-${vni}`);
      expect(await pings(hosts[0], 'r1', r2.ip, 3)).toBe(true);
      expect(await redirected(hosts[0], vni, '1', `vxv-${vni}`)).toBeGreaterThanOrEqual(out + 3);
      await hosts[0].execOk(['iptables', '-w', '-I', ...rule]);
      try {
        // The monitor sees the insert; every block is emptied, and the frames meet the rule.
        await eventually('host1 suspended', async () => (await filters(hosts[0], vni)).length === 0 && (await active()) === 0, 5_000, 50);
        expect(await pings(hosts[0], 'r1', r2.ip, 2)).toBe(false);
        // The rule itself counted them (iptables -S -v prints a rule's counters as `-c PKTS BYTES`).
        const listing = await hosts[0].execOk(['iptables', '-w', '-S', 'DOCKER-USER', '-v']);
        expect(Number(new RegExp(`-s ${r1.ip}/32 -d ${r2.ip}/32 -c (\\d+) `).exec(listing)?.[1] ?? 0)).toBeGreaterThanOrEqual(2);
      } finally {
        await hosts[0].execOk(['iptables', '-w', '-D', ...rule]);
      }
      await eventually('host1 redirecting again', async () => (await hasEntries(hosts[0], vni, r1, r2)) && (await active()) === 1, 20_000, 200);
      expect(await pings(hosts[0], 'r1', r2.ip, 2)).toBe(true);
    } finally {
      await drivers[0].stop();
      drivers[0] = await startDriver(hosts[0], env());
    }
    await eventually('host1 block rebuilt', () => hasEntries(hosts[0], vni, r1, r2), 20_000, 200);
  });

  it('removing a container takes its entries away on both hosts; removing the networks leaves no qdisc or block', async () => {
    await hosts[0].dockerOk(['rm', '-f', 'r1']);
    // Leave and DeleteEndpoint remove the port's entries before they return.
    expect((await filters(hosts[0], vni)).some((f) => f.text.includes(r1.port) || f.text.includes(macWords(r1.mac)))).toBe(false);
    await eventually('r1 gone from host2', async () => !(await filters(hosts[1], vni)).some((f) => f.text.includes(macWords(r1.mac))), 10_000, 100);
    for (const h of hosts) {
      await h.docker(['rm', '-f', 'r1', 'r2', 'i1', 'i2']);
      await h.dockerOk(['network', 'rm', NET.name, ISO.name]);
    }
    for (const h of hosts) {
      await eventually(`${h.name}: no vxnet link left`, async () => !/\bvx[bve]-/.test(await h.execOk(['ip', '-o', 'link', 'show'])), 20_000, 200);
      expect(await h.execOk(['tc', 'qdisc', 'show'])).not.toContain('ingress_block');
      expect(await filters(h, vni)).toEqual([]);
    }
  });
});
