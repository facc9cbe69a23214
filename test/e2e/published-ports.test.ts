// Published ports (`docker run -p/-P`) on a vxnet network, against real dockerd 20.10 and 26.1 on
// FORWARD-DROP hosts. Every published port is reached from each client position a user has: an
// "outside" machine on the underlay (a namespace of this test, never the real network), the host
// itself (its address and 127.0.0.1), a container of the same network (hairpin through the host's
// address), a container of another vxnet network and one on Docker's bridge. A port that is taken
// fails `docker run` naming the port and leaves nothing; stopping the container ends its ports; a
// SIGKILLed driver leaves the ports answering and takes them back when it returns; a dockerd
// restart with live-restore keeps them answering.
import { Host, upHost, downHost, startInHost, stopInHost, stopDocker, startDocker, DockerVersion, HostProcess } from '../helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../helpers/image';
import { Driver, startDriver, socketFromOutside, driverLog, MAIN_JS } from '../helpers/vxnet-in-host';
import { pluginOk } from '../helpers/plugin-client';
import { eventually } from '../helpers/eventually';
import { containerIp } from '../helpers/docker-inspect';
import { upOutside, Outside } from '../helpers/outside-ns';
import type { PortStatus, StatusReport } from '../../src/network/status';

jest.setTimeout(240_000);

const NET = 'vxt-ppa';
const OTHER = 'vxt-ppb';
const SUBNET = '10.97.0.0/24';
const OTHER_SUBNET = '10.98.0.0/24';
const OUTSIDE = { name: 'vxt-ppout', cidr: '172.31.254.179/24', link: 'vxupp-out' };
/** The page every web container serves: its name, so a reply shows who answered. */
const WEB = (name: string): string[] => ['sh', '-c', `mkdir -p /www && echo hello-${name} >/www/index.html && exec httpd -f -p 80 -h /www`];

const HOSTS: Array<[DockerVersion, string, string]> = [
  ['20', 'vxt-pp20', '172.31.254.171'],
  ['26', 'vxt-pp26', '172.31.254.172'],
];

const LIVE_RESTORE = '--live-restore';

let outside: Outside | undefined;

afterAll(async () => {
  await outside?.down();
});

/** An HTTP GET bounded from outside (busybox `wget -T` segfaults); '' when nothing answered. */
function wgetArgs(url: string): string[] {
  return ['timeout', '6', 'busybox', 'wget', '-q', '-O-', url];
}

describe.each(HOSTS)('published ports on dockerd %s', (version, name, ip) => {
  let host: Host;
  let driver: Driver;

  const status = async (): Promise<StatusReport> => (await pluginOk(socketFromOutside(host), 'Vxnet.Status', {})).Status as StatusReport;
  const ports = async (): Promise<PortStatus[]> => (await status()).ports ?? [];
  /** vxnet's per-endpoint nat rules (tagged vxnet-ports:<EndpointID>). */
  const natRules = async (): Promise<string[]> => (await host.execOk(['iptables', '-w', '-t', 'nat', '-S'])).split('\n').filter((l) => l.includes('vxnet-ports:'));
  const listeners = async (port: number, proto: 'tcp' | 'udp' = 'tcp'): Promise<string> =>
    host.execOk(['ss', '-Hln', proto === 'tcp' ? '-t' : '-u', '-p', 'sport', '=', `:${port}`]);

  const fromOutside = async (url: string): Promise<string> => (await outside!.exec(wgetArgs(url), 15_000)).stdout.trim();
  const fromHost = async (url: string): Promise<string> => (await host.exec(wgetArgs(url), { timeoutMs: 15_000 })).stdout.trim();
  const fromContainer = async (network: string, url: string): Promise<string> =>
    (await host.docker(['run', '--rm', '--network', network, TEST_IMAGE, ...wgetArgs(url)], { timeoutMs: 30_000 })).stdout.trim();
  /** Waits for an answer (the container's httpd may still be starting); returns the last reply. */
  const answers = async (get: () => Promise<string>, want: string): Promise<string> => {
    let last = '';
    await eventually(`answer ${want}`, async () => (last = await get()) === want, 20_000, 300).catch(() => undefined);
    return last;
  };
  const web = (c: string, publish: string[]): Promise<string> => host.dockerOk(['run', '-d', '--name', c, '--network', NET, ...publish, TEST_IMAGE, ...WEB(c)]);
  const hostPortOf = async (c: string, containerPort: number, proto = 'tcp'): Promise<number> => {
    const cip = await containerIp(host, NET, c);
    const p = (await ports()).find((x) => x.containerIp === cip && x.containerPort === containerPort && x.proto === proto);
    if (!p) throw new Error(`no published ${containerPort}/${proto} for ${c} (${cip}) in ${JSON.stringify(await ports())}`);
    return p.hostPort;
  };

  beforeAll(async () => {
    // live-restore: the dockerd restart below keeps containers running (the other tests do not care).
    process.env.VXT_DOCKERD_EXTRA = LIVE_RESTORE;
    try {
      host = await upHost(name, ip, { docker: version });
    } finally {
      delete process.env.VXT_DOCKERD_EXTRA;
    }
    outside ??= await upOutside(OUTSIDE.name, OUTSIDE.cidr, OUTSIDE.link);
    await ensureTestImage(host);
    driver = await startDriver(host, { VXNET_TEARDOWN_DELAY: '0', VXNET_RECONCILE_GRACE: '3' });
    await host.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', SUBNET, NET]);
    await host.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', OTHER_SUBNET, OTHER]);
  });

  afterAll(async () => {
    if (!host) return;
    const all = (await host.docker(['ps', '-aq'])).stdout.split('\n').filter(Boolean);
    if (all.length) await host.docker(['rm', '-f', ...all]);
    await host.docker(['network', 'rm', NET, OTHER]);
    await driver?.stop();
    await downHost(host);
  });

  it('-p H:C answers from outside, the host (its address and 127.0.0.1), the same network, another vxnet network and Docker\'s bridge', async () => {
    await web('w1', ['-p', '18080:80']);
    const url = `http://${ip}:18080/`;
    expect(await answers(() => fromOutside(url), 'hello-w1')).toBe('hello-w1');
    expect(await fromHost(url)).toBe('hello-w1');
    expect(await fromHost('http://127.0.0.1:18080/')).toBe('hello-w1');
    expect(await fromContainer(NET, url)).toBe('hello-w1');
    expect(await fromContainer(OTHER, url)).toBe('hello-w1');
    expect(await fromContainer('bridge', url)).toBe('hello-w1');
    // The container reaches its own published port through the host too.
    expect((await host.dockerOk(['exec', 'w1', ...wgetArgs(url)]))).toBe('hello-w1');
    const cip = await containerIp(host, NET, 'w1');
    expect(await ports()).toEqual([
      { endpoint: expect.stringMatching(/^[0-9a-f]{12}$/), network: 'subnet-10.97.0.0-24', proto: 'tcp', hostIp: '0.0.0.0', hostPort: 18080, containerIp: cip, containerPort: 80, reserved: true },
    ]);
    // The driver holds the port, as dockerd does for its own bridge.
    expect(await listeners(18080)).toMatch(/node/);
  });

  it('-p IP:H:C publishes on that address only; -p C takes a free ephemeral port; -p A-B:C the first free one', async () => {
    const holder = startInHost(host, 'socat', ['TCP-LISTEN:18091,reuseaddr,fork', 'SYSTEM:true']);
    try {
      await eventually('host process listens on 18091', async () => /socat/.test(await listeners(18091)), 10_000, 100);
      await web('w2', ['-p', '127.0.0.1:18090:80', '-p', `${ip}:18093:80`, '-p', '80', '-p', '18091-18095:80']);
      expect(await answers(() => fromHost('http://127.0.0.1:18090/'), 'hello-w2')).toBe('hello-w2');
      expect(await fromOutside(`http://${ip}:18090/`)).toBe('');
      expect(await fromOutside(`http://${ip}:18093/`)).toBe('hello-w2');
      const w2 = await containerIp(host, NET, 'w2');
      const bound = (await ports()).filter((p) => p.containerIp === w2);
      const range = (await host.execOk(['cat', '/proc/sys/net/ipv4/ip_local_port_range'])).split(/\s+/).map(Number);
      const ephemeral = bound.find((p) => p.hostPort >= range[0] && p.hostPort <= range[1]);
      expect(ephemeral).toBeDefined();
      expect(await fromOutside(`http://${ip}:${ephemeral!.hostPort}/`)).toBe('hello-w2');
      // 18091 is the host process's: the range gave the next one.
      expect(bound.map((p) => `${p.hostIp}:${p.hostPort}`).sort()).toEqual(
        ['127.0.0.1:18090', `${ip}:18093`, `0.0.0.0:${ephemeral!.hostPort}`, '0.0.0.0:18092'].sort(),
      );
      expect(await fromOutside(`http://${ip}:18092/`)).toBe('hello-w2');
    } finally {
      await stopInHost(holder);
    }
  });

  it('/udp and -P: UDP reaches the container from outside; -P publishes every exposed port on free ports', async () => {
    await host.dockerOk(['run', '-d', '--name', 'u1', '--network', NET, '-p', '15353:5353/udp', '--expose', '7000', '--expose', '7001/udp', '-P', TEST_IMAGE,
      'sh', '-c', 'mkdir -p /tmp && exec socat -u UDP-RECV:5353 OPEN:/tmp/got,creat,append']);
    const cip = await containerIp(host, NET, 'u1');
    const mine = (await ports()).filter((p) => p.containerIp === cip).map((p) => `${p.containerPort}/${p.proto}`).sort();
    expect(mine).toEqual(['5353/udp', '7000/tcp', '7001/udp']);
    const seen = async (): Promise<boolean> => {
      await outside!.exec(['sh', '-c', `echo ping-from-outside | socat -u - UDP-SENDTO:${ip}:15353`]);
      return (await host.docker(['exec', 'u1', 'cat', '/tmp/got'])).stdout.includes('ping-from-outside');
    };
    await eventually('UDP datagram from outside arrives in the container', seen, 20_000, 500);
  });

  it('a UDP client that keeps its source port reaches the container publishing the port now, not the one that went', async () => {
    // One flow (outside:40053 -> host:15400) throughout: conntrack keeps its NAT binding while
    // packets keep coming, so only forgetting the gone container's entries lets it reach the new one.
    const recv = (c: string) => ['sh', '-c', `mkdir -p /tmp && exec socat -u UDP-RECV:5353 OPEN:/tmp/got-${c},creat,append`];
    const send = (text: string) => outside!.exec(['sh', '-c', `echo ${text} | socat -u - UDP-SENDTO:${ip}:15400,sourceport=40053,reuseaddr`]);
    const got = async (c: string, text: string): Promise<boolean> => (await host.docker(['exec', c, 'cat', `/tmp/got-${c}`])).stdout.includes(text);
    /** Sends `to-C` until container C got it. */
    const delivered = (c: string, withinMs: number) =>
      eventually(`${c} gets the flow's datagrams`, async () => {
        await send(`to-${c}`);
        return got(c, `to-${c}`);
      }, withinMs, 300);
    const flows = async (cip: string): Promise<string[]> =>
      (await host.execOk(['cat', '/proc/net/nf_conntrack'])).split('\n').filter((l) => l.includes('dport=15400') && l.includes(`src=${cip} `));
    await host.dockerOk(['run', '-d', '--name', 'ua', '--network', NET, '-p', '15400:5353/udp', TEST_IMAGE, ...recv('ua')]);
    const uaIp = await containerIp(host, NET, 'ua');
    await delivered('ua', 20_000);
    expect(await flows(uaIp)).toHaveLength(1);
    await host.dockerOk(['rm', '-f', 'ua']);
    // Forgotten in the background of DeleteEndpoint (one walk of the kernel's conntrack hash).
    await eventually("ua's flow forgotten", async () => (await flows(uaIp)).length === 0, 3_000, 100);
    const ubIp = '10.97.0.200';
    await host.dockerOk(['run', '-d', '--name', 'ub', '--network', NET, '--ip', ubIp, '-p', '15400:5353/udp', TEST_IMAGE, ...recv('ub')]);
    expect(ubIp).not.toBe(uaIp);
    await delivered('ub', 5_000);
    expect(await flows(ubIp)).toHaveLength(1);
    await host.dockerOk(['rm', '-f', 'ub']);
  });

  it('refuses sctp with an error naming it, and leaves nothing', async () => {
    const before = { ports: await ports(), rules: await natRules() };
    const r = await host.docker(['run', '-d', '--name', 's1', '--network', NET, '-p', '9999:9999/sctp', TEST_IMAGE, 'sleep', '60']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/sctp is not supported/);
    expect({ ports: await ports(), rules: await natRules() }).toEqual(before);
    await host.docker(['rm', '-f', 's1']);
  });

  it('a port held by a host process or another container fails docker run naming it, leaving nothing behind', async () => {
    const holder: HostProcess = startInHost(host, 'socat', ['TCP-LISTEN:18100,reuseaddr,fork', 'SYSTEM:true']);
    try {
      await eventually('host process listens on 18100', async () => /socat/.test(await listeners(18100)), 10_000, 100);
      const before = { ports: await ports(), rules: await natRules() };
      const r = await host.docker(['run', '-d', '--name', 'c1', '--network', NET, '-p', '18100:80', TEST_IMAGE, ...WEB('c1')]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/host port 18100\/tcp on 0\.0\.0\.0 is already in use/);
      expect({ ports: await ports(), rules: await natRules() }).toEqual(before);
      expect(await listeners(18100)).not.toMatch(/node/);
      await host.docker(['rm', '-f', 'c1']);
    } finally {
      await stopInHost(holder);
    }
    // w1 (first test) holds 18080.
    const before = { ports: await ports(), rules: await natRules() };
    const r = await host.docker(['run', '-d', '--name', 'c2', '--network', NET, '-p', '18080:80', TEST_IMAGE, ...WEB('c2')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/host port 18080\/tcp on 0\.0\.0\.0 is already in use/);
    expect({ ports: await ports(), rules: await natRules() }).toEqual(before);
    expect(await fromOutside(`http://${ip}:18080/`)).toBe('hello-w1');
    await host.docker(['rm', '-f', 'c2']);
    // Docker's own bridge and vxnet see each other's ports as taken (docker-proxy and vxnet hold sockets).
    await host.dockerOk(['run', '-d', '--name', 'b1', '-p', '18140:80', TEST_IMAGE, 'sleep', '600']);
    const fromVxnet = await host.docker(['run', '-d', '--name', 'c4', '--network', NET, '-p', '18140:80', TEST_IMAGE, 'sleep', '600']);
    expect(fromVxnet.stderr).toMatch(/host port 18140\/tcp on 0\.0\.0\.0 is already in use/);
    const fromBridge = await host.docker(['run', '-d', '--name', 'b2', '-p', '18080:80', TEST_IMAGE, 'sleep', '600']);
    expect(fromBridge.code).not.toBe(0);
    expect(fromBridge.stderr).toMatch(/18080/);
    expect({ ports: await ports(), rules: await natRules() }).toEqual(before);
    await host.docker(['rm', '-f', 'b1', 'b2', 'c4']);
    // The same port on another protocol is another port.
    await host.dockerOk(['run', '-d', '--name', 'c3', '--network', NET, '-p', '18080:80/udp', TEST_IMAGE, 'sleep', '600']);
    expect((await ports()).filter((p) => p.hostPort === 18080).map((p) => p.proto).sort()).toEqual(['tcp', 'udp']);
  });

  it('stopping a container ends its ports: rules, reservation and record; starting it again publishes them again', async () => {
    await web('st', ['-p', '18110:80']);
    expect(await answers(() => fromOutside(`http://${ip}:18110/`), 'hello-st')).toBe('hello-st');
    const cip = await containerIp(host, NET, 'st');
    await host.dockerOk(['stop', '-t', '1', 'st']);
    expect((await ports()).filter((p) => p.hostPort === 18110)).toEqual([]);
    expect((await natRules()).filter((l) => l.includes(`${cip}:80`) || l.includes('--dport 18110'))).toEqual([]);
    expect(await listeners(18110)).toBe('');
    expect(await fromOutside(`http://${ip}:18110/`)).toBe('');
    await host.dockerOk(['start', 'st']);
    expect(await answers(() => fromOutside(`http://${ip}:18110/`), 'hello-st')).toBe('hello-st');
    await host.dockerOk(['rm', '-f', 'st']);
    expect((await ports()).filter((p) => p.hostPort === 18110)).toEqual([]);
  });

  it('a SIGKILLed driver leaves the ports answering; restarted, it takes the reservations back and adds no rule twice', async () => {
    const rules = (await natRules()).sort();
    const published = await ports();
    await driver.stop('SIGKILL');
    // The kernel keeps serving while the driver is away.
    expect(await fromOutside(`http://${ip}:18080/`)).toBe('hello-w1');
    expect(await fromHost('http://127.0.0.1:18080/')).toBe('hello-w1');
    driver = await startDriver(host, { VXNET_TEARDOWN_DELAY: '0', VXNET_RECONCILE_GRACE: '3' });
    await eventually('reconcile after restart', async () => (await driverLog(driver)).some((l) => l.msg === 'reconcile done'), 30_000, 200);
    await eventually('reservations back', async () => (await ports()).every((p) => p.reserved), 20_000, 200);
    expect(await ports()).toEqual(published);
    expect((await natRules()).sort()).toEqual(rules);
    expect(await listeners(18080)).toMatch(/node/);
    expect(await fromOutside(`http://${ip}:18080/`)).toBe('hello-w1');
    expect(await fromContainer(NET, `http://${ip}:18080/`)).toBe('hello-w1');
    // A new container after the restart gets its ports as usual.
    await web('k1', ['-p', '18120:80']);
    expect(await answers(() => fromOutside(`http://${ip}:18120/`), 'hello-k1')).toBe('hello-k1');
  });

  it('a dockerd restart with live-restore keeps running containers\' ports answering; one that died meanwhile leaves nothing', async () => {
    await web('lr', ['-p', '18130:80']);
    expect(await answers(() => fromOutside(`http://${ip}:18130/`), 'hello-lr')).toBe('hello-lr');
    const lrIp = await containerIp(host, NET, 'lr');
    const lrPid = Number(await host.dockerOk(['inspect', '-f', '{{.State.Pid}}', 'lr']));
    await stopDocker(host);
    expect(await fromOutside(`http://${ip}:18080/`)).toBe('hello-w1');
    // Dies while dockerd is away: dockerd never tells the driver; reconcile after its Activate must.
    process.kill(lrPid, 'SIGKILL');
    // host.sh reads the extra dockerd arguments at each start.
    process.env.VXT_DOCKERD_EXTRA = LIVE_RESTORE;
    try {
      await startDocker(host);
    } finally {
      delete process.env.VXT_DOCKERD_EXTRA;
    }
    await eventually('a reconcile after dockerd started', async () => (await status()).lastReconcile?.trigger === 'dockerd-start', 30_000, 300);
    expect(await fromOutside(`http://${ip}:18080/`)).toBe('hello-w1');
    expect((await ports()).some((p) => p.hostPort === 18080 && p.reserved)).toBe(true);
    await eventually('the dead container\'s port is gone', async () => !(await ports()).some((p) => p.hostPort === 18130), 30_000, 300);
    expect((await natRules()).filter((l) => l.includes(`${lrIp}:80`) || l.includes('--dport 18130'))).toEqual([]);
    expect(await listeners(18130)).toBe('');
  });

  it('vxnet status prints the bindings; removing every container leaves no binding, rule or reservation', async () => {
    const text = await host.execOk([process.execPath, MAIN_JS, 'status', '--socket', '/run/docker/plugins/vxnet.sock']);
    expect(text).toMatch(new RegExp(`\\nPUBLISHED PORTS\\nENDPOINT +NETWORK +PROTO +HOST +CONTAINER +RESERVED\\n`));
    expect(text).toMatch(new RegExp(`subnet-10\\.97\\.0\\.0-24 +tcp +0\\.0\\.0\\.0:18080 +${(await containerIp(host, NET, 'w1')).replace(/\./g, '\\.')}:80 +yes\\n`));
    const all = (await host.docker(['ps', '-aq'])).stdout.split('\n').filter(Boolean);
    await host.dockerOk(['rm', '-f', ...all]);
    expect(await ports()).toEqual([]);
    expect(await natRules()).toEqual([]);
    expect(await listeners(18080)).toBe('');
    const plan = (await pluginOk(socketFromOutside(host), 'Vxnet.Reconcile', { DryRun: true })).Plan as Record<string, unknown>;
    expect(Object.entries(plan).filter(([k, v]) => k !== 'dockerdAnswered' && Array.isArray(v) && v.length > 0)).toEqual([]);
  });
});
