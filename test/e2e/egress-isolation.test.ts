// Egress and isolation on real dockerds (20.10 and 26.1, sharing etcd), and on a dockerd 20.10
// started with --iptables=false whose FORWARD policy is ACCEPT. The "outside" is a namespace on
// the simulated underlay (no dockerd, no route to any container subnet) serving TCP and UDP with
// socat, which answers each client with the address it saw: the only place a test may send
// traffic outside vxnet. Without source NAT its answers have no way back.
import { Host, upHost, downHost, startInHost, stopInHost, HostProcess } from '../helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../helpers/image';
import { Driver, startDriver } from '../helpers/vxnet-in-host';
import { HostEtcd, startEtcdInHost } from '../helpers/etcd-in-host';
import { containerIp } from '../helpers/docker-inspect';
import { SOCAT_MOUNTS, echoServer, tcp } from '../helpers/socat';

jest.setTimeout(240_000);

const OUT_IP = '172.31.254.79';
/** The second file section's own outside (the first is down by then, but keep them apart). */
const OUT2_IP = '172.31.254.78';
const TCP_PORT = '8000';
const UDP_PORT = '9999';
const NET_A = { name: 'vxt-ega', subnet: '10.97.1.0/24' };
const NET_B = { name: 'vxt-egb', subnet: '10.97.2.0/24' };
const NET_NONAT = { name: 'vxt-egn', subnet: '10.97.3.0/24' };
const NET_INT = { name: 'vxt-egi', subnet: '10.97.4.0/24' };
const DOCKER_NET = { name: 'vxt-egd', subnet: '10.97.9.0/24' };

function vxnetCreate(net: { name: string; subnet: string }, ...extra: string[]): string[] {
  return ['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', net.subnet, ...extra, net.name];
}

async function sleeper(h: Host, name: string, net: string, extra: string[] = []): Promise<string> {
  await h.dockerOk(['run', '-d', '--name', name, '--network', net, ...SOCAT_MOUNTS, ...extra, TEST_IMAGE, 'sleep', '3600']);
  return containerIp(h, net, name);
}

/** What the TCP server at ip answered: the client address it saw; null when nothing came back. */
function tcpPeer(h: Host, c: string, ip: string): Promise<string | null> {
  return tcp(h, c, ip, TCP_PORT);
}

async function udpPeer(h: Host, c: string, ip: string): Promise<string | null> {
  const r = await h.docker(['exec', c, 'sh', '-c', `echo hi | timeout 3 socat -t 2 - UDP:${ip}:${UDP_PORT}`], { timeoutMs: 15_000 });
  return r.code === 0 && r.stdout.trim() !== '' ? r.stdout.trim() : null;
}

async function pings(h: Host, c: string, ip: string): Promise<boolean> {
  return (await h.docker(['exec', c, 'ping', '-c', '1', '-W', '1', ip], { timeoutMs: 15_000 })).code === 0;
}

/** Servers that answer every client with the address they saw. */
function peerEchoServers(h: Host): HostProcess[] {
  return [
    startInHost(h, 'socat', echoServer(`TCP-LISTEN:${TCP_PORT},fork,reuseaddr`)),
    // UDP brings no close from the client, so the answer has no race to lose (see echoServer).
    startInHost(h, 'socat', [`UDP-RECVFROM:${UDP_PORT},fork`, 'SYSTEM:echo $SOCAT_PEERADDR']),
  ];
}

describe('egress and isolation (etcd, dockerd 20.10 and 26.1)', () => {
  let etcdHost: Host;
  let etcd: HostEtcd;
  let outside: Host;
  const servers: HostProcess[] = [];
  const hosts: Host[] = [];
  const drivers: Driver[] = [];
  const ips: Record<string, string> = {};

  beforeAll(async () => {
    etcdHost = await upHost('vxt-eg0', '172.31.254.70', { docker: null });
    etcd = await startEtcdInHost(etcdHost);
    outside = await upHost('vxt-ego', OUT_IP, { docker: null });
    servers.push(...peerEchoServers(outside));
    for (const [i, v] of [[1, '20'], [2, '26']] as const) {
      const h = await upHost(`vxt-eg${i}`, `172.31.254.7${i}`, { docker: v });
      await ensureTestImage(h);
      hosts.push(h);
      drivers.push(await startDriver(h, { VXNET_STORE: 'etcd', VXNET_ETCD_ENDPOINTS: etcd.endpoint, VXNET_VTEP_INTERFACE: 'eth0' }));
    }
    for (const [i, h] of hosts.entries()) {
      await h.dockerOk(vxnetCreate(NET_A));
      await h.dockerOk(vxnetCreate(NET_B));
      await h.dockerOk(vxnetCreate(NET_NONAT, '-o', 'com.docker.network.bridge.enable_ip_masquerade=false'));
      await h.dockerOk(vxnetCreate(NET_INT, '--internal'));
      await h.dockerOk(['network', 'create', '--subnet', DOCKER_NET.subnet, DOCKER_NET.name]);
      const n = i + 1;
      ips[`a${n}`] = await sleeper(h, `a${n}`, NET_A.name);
      ips[`b${n}`] = await sleeper(h, `b${n}`, NET_B.name);
      ips[`n${n}`] = await sleeper(h, `n${n}`, NET_NONAT.name);
      ips[`i${n}`] = await sleeper(h, `i${n}`, NET_INT.name);
      ips[`d${n}`] = await sleeper(h, `d${n}`, DOCKER_NET.name);
      ips[`z${n}`] = await sleeper(h, `z${n}`, 'bridge');
      // Containers serve the same echo: a peer shows the address it saw.
      await h.dockerOk(['exec', '-d', `a${n}`, 'socat', ...echoServer(`TCP-LISTEN:${TCP_PORT},fork,reuseaddr`)]);
      await h.dockerOk(['exec', '-d', `b${n}`, 'socat', ...echoServer(`TCP-LISTEN:${TCP_PORT},fork,reuseaddr`)]);
    }
  });

  afterAll(async () => {
    for (const h of hosts) {
      await h.docker(['rm', '-f', ...['a', 'b', 'n', 'i', 'd', 'z'].flatMap((p) => [`${p}1`, `${p}2`])]);
      await h.docker(['network', 'rm', NET_A.name, NET_B.name, NET_NONAT.name, NET_INT.name, DOCKER_NET.name]);
    }
    for (const d of drivers) await d.stop();
    for (const s of servers) await stopInHost(s, 2000);
    await etcd?.stop();
    for (const h of [...hosts, outside, etcdHost]) if (h) await downHost(h);
  });

  describe.each([
    ['20.10', 0],
    ['26.1', 1],
  ])('on dockerd %s', (_v, idx) => {
    const n = idx + 1;
    const h = (): Host => hosts[idx];

    it('reaches the outside over TCP, UDP and ICMP with its host address as source', async () => {
      expect(await tcpPeer(h(), `a${n}`, OUT_IP)).toBe(h().ip);
      expect(await udpPeer(h(), `a${n}`, OUT_IP)).toBe(h().ip);
      expect(await pings(h(), `a${n}`, OUT_IP)).toBe(true);
    });

    it('enable_ip_masquerade=false: no NAT; the outside sees the real address once it routes back', async () => {
      expect(await tcpPeer(h(), `n${n}`, OUT_IP)).toBeNull();
      expect(await pings(h(), `n${n}`, OUT_IP)).toBe(false);
      await outside.execOk(['ip', 'route', 'add', NET_NONAT.subnet, 'via', h().ip]);
      try {
        expect(await tcpPeer(h(), `n${n}`, OUT_IP)).toBe(ips[`n${n}`]);
        expect(await udpPeer(h(), `n${n}`, OUT_IP)).toBe(ips[`n${n}`]);
      } finally {
        await outside.execOk(['ip', 'route', 'del', NET_NONAT.subnet, 'via', h().ip]);
      }
    });

    it('--internal: no egress', async () => {
      expect(await pings(h(), `i${n}`, OUT_IP)).toBe(false);
      expect(await tcpPeer(h(), `i${n}`, OUT_IP)).toBeNull();
    });

    it('keeps two vxnet networks apart on one host, both ways', async () => {
      expect(await pings(h(), `a${n}`, ips[`b${n}`])).toBe(false);
      expect(await tcpPeer(h(), `a${n}`, ips[`b${n}`])).toBeNull();
      expect(await pings(h(), `b${n}`, ips[`a${n}`])).toBe(false);
      expect(await tcpPeer(h(), `b${n}`, ips[`a${n}`])).toBeNull();
    });

    it("keeps Docker's bridge networks (docker0 and a user network) and vxnet apart, both ways", async () => {
      for (const d of [`d${n}`, `z${n}`]) {
        expect(await pings(h(), d, ips[`a${n}`])).toBe(false);
        expect(await tcpPeer(h(), d, ips[`a${n}`])).toBeNull();
        expect(await pings(h(), `a${n}`, ips[d])).toBe(false);
      }
      // Docker's own containers still reach the outside: vxnet's rules only concern its bridges.
      expect(await pings(h(), `z${n}`, OUT_IP)).toBe(true);
    });
  });

  it('keeps two vxnet networks apart across hosts, both ways', async () => {
    expect(await pings(hosts[0], 'a1', ips.b2)).toBe(false);
    expect(await tcpPeer(hosts[0], 'a1', ips.b2)).toBeNull();
    expect(await pings(hosts[1], 'b2', ips.a1)).toBe(false);
    expect(await tcpPeer(hosts[1], 'b2', ips.a1)).toBeNull();
  });

  it('lets containers of one network across hosts see their real addresses (no NAT)', async () => {
    expect(await tcpPeer(hosts[0], 'a1', ips.a2)).toBe(ips.a1);
    expect(await tcpPeer(hosts[1], 'a2', ips.a1)).toBe(ips.a2);
    expect(await pings(hosts[0], 'a1', ips.a2)).toBe(true);
  });

  it('holds the same rules on both hosts: a constant chain and one set entry per local network', async () => {
    for (const h of hosts) {
      const chain = (await h.execOk(['iptables', '-w', '-S', 'VXNET-ISOLATION'])).split('\n').filter((l) => l.startsWith('-A '));
      expect(chain).toHaveLength(9);
      // Jumped to from DOCKER-USER: Docker's rules for the bridge network made later sit above any FORWARD position.
      expect(await h.execOk(['iptables', '-w', '-S', 'DOCKER-USER'])).toContain('-A DOCKER-USER -m comment --comment vxnet -j VXNET-ISOLATION');
      expect(chain.filter((l) => /vxb-\d/.test(l))).toEqual([]);
      const sets = (await h.execOk(['ipset', 'save'])).split('\n').filter((l) => l.startsWith('add vxnet-')).sort();
      const egress = sets.filter((l) => l.startsWith('add vxnet-egress ')).map((l) => l.split(' ')[2].split(',')[0]).sort();
      expect(egress).toEqual([NET_A.subnet, NET_B.subnet, NET_NONAT.subnet]);
      const masq = sets.filter((l) => l.startsWith('add vxnet-masq ')).map((l) => l.split(' ')[2]).sort();
      expect(masq).toEqual([NET_A.subnet, NET_B.subnet]);
    }
  });
});

describe('isolation on a dockerd with --iptables=false (FORWARD policy ACCEPT)', () => {
  let h: Host;
  let outside: Host;
  let driver: Driver;
  const servers: HostProcess[] = [];
  const ips: Record<string, string> = {};

  beforeAll(async () => {
    outside = await upHost('vxt-ego2', OUT2_IP, { docker: null });
    servers.push(...peerEchoServers(outside));
    const before = process.env.VXT_DOCKERD_EXTRA;
    process.env.VXT_DOCKERD_EXTRA = '--iptables=false';
    try {
      h = await upHost('vxt-eg3', '172.31.254.73', { docker: '20' });
    } finally {
      if (before === undefined) delete process.env.VXT_DOCKERD_EXTRA;
      else process.env.VXT_DOCKERD_EXTRA = before;
    }
    // host.sh sets DROP "as on a real host"; this host is the other kind: nothing drops by default.
    await h.execOk(['iptables', '-w', '-P', 'FORWARD', 'ACCEPT']);
    await ensureTestImage(h);
    driver = await startDriver(h);
    await h.dockerOk(vxnetCreate(NET_A));
    await h.dockerOk(vxnetCreate(NET_B));
    await h.dockerOk(['network', 'create', '--subnet', DOCKER_NET.subnet, DOCKER_NET.name]);
    ips.a = await sleeper(h, 'fa', NET_A.name);
    ips.a2 = await sleeper(h, 'fa2', NET_A.name);
    ips.b = await sleeper(h, 'fb', NET_B.name);
    ips.d = await sleeper(h, 'fd', DOCKER_NET.name);
    await h.dockerOk(['exec', '-d', 'fa2', 'socat', ...echoServer(`TCP-LISTEN:${TCP_PORT},fork,reuseaddr`)]);
  });

  afterAll(async () => {
    if (h) {
      await h.docker(['rm', '-f', 'fa', 'fa2', 'fb', 'fd']);
      await h.docker(['network', 'rm', NET_A.name, NET_B.name, DOCKER_NET.name]);
    }
    await driver?.stop();
    for (const s of servers) await stopInHost(s, 2000);
    for (const x of [h, outside]) if (x) await downHost(x);
  });

  it('runs without Docker chains and with FORWARD ACCEPT', async () => {
    const fwd = await h.execOk(['iptables', '-w', '-S', 'FORWARD']);
    expect(fwd).toContain('-P FORWARD ACCEPT');
    expect(fwd).not.toContain('DOCKER');
    expect(fwd).toContain('-A FORWARD -m comment --comment vxnet -j VXNET-ISOLATION');
  });

  it('passes traffic within a network with real addresses, and reaches the outside through NAT', async () => {
    expect(await tcpPeer(h, 'fa', ips.a2)).toBe(ips.a);
    // dockerd's --ip-forward (on by default) works without --iptables.
    expect(await h.execOk(['cat', '/proc/sys/net/ipv4/ip_forward'])).toBe('1');
    expect(await tcpPeer(h, 'fa', OUT2_IP)).toBe(h.ip);
    expect(await udpPeer(h, 'fa', OUT2_IP)).toBe(h.ip);
  });

  it('keeps two vxnet networks apart, and Docker bridge containers out, both ways', async () => {
    expect(await pings(h, 'fa', ips.b)).toBe(false);
    expect(await pings(h, 'fb', ips.a)).toBe(false);
    expect(await pings(h, 'fd', ips.a)).toBe(false);
    expect(await tcpPeer(h, 'fd', ips.a2)).toBeNull();
    expect(await pings(h, 'fa', ips.d)).toBe(false);
  });
});
