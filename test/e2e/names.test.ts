// Names across hosts on real dockerds: 20.10 (n1, n3) and 26.1 (n2) sharing one etcd, each
// dockerd started with `--dns` pointing at a fake upstream (dnsmasq) in an "outside" namespace
// on the underlay — the only outside this test talks to. Docker's embedded resolver forwards
// names it does not know to that upstream through vxnet's bridge; vxnet intercepts, answers the
// network's names and forwards the rest.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Host, upHost, downHost, startInHost, REPO_ROOT } from '../helpers/hosts';
import { eventually } from '../helpers/eventually';
import { ensureTestImage, TEST_IMAGE } from '../helpers/image';
import { Driver, startDriver, MAIN_JS } from '../helpers/vxnet-in-host';
import { HostEtcd, startEtcdInHost } from '../helpers/etcd-in-host';
import { containerIp } from '../helpers/docker-inspect';
import { cliEnv } from '../helpers/vxnet-cli';
import { nslookupA, nslookupAAAA } from '../helpers/nslookup';

jest.setTimeout(300_000);

const NET = 'vxt-names';
const NET2 = 'vxt-names2';
const NET6 = { name: 'vxt-names6', subnet: '10.95.0.0/24', gateway: '10.95.0.1', subnet6: 'fd13:95::/64', gateway6: 'fd13:95::1' };
const OUT_IP = '172.31.254.89';
const OUTSIDE_NAME = 'outside.test';
const OUTSIDE_ADDR = '172.31.254.77';
const METRICS_ADDR = '127.0.0.1:9478';
const SOCKET = '/run/docker/plugins/vxnet.sock';
const SCRAPE = `fetch('http://${METRICS_ADDR}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t), (e) => { console.error(e); process.exit(1); })`;
const DNS_PACKET = path.join(REPO_ROOT, 'node_modules/dns-packet');

/** A query over TCP or UDP to SERVER:53 from whatever namespace runs it; prints id, flags and answers. */
const RAW_QUERY = `
const dp = require(${JSON.stringify(DNS_PACKET)});
const [proto, server, name, id] = process.argv.slice(1);
const q = dp.encode({ id: Number(id), type: 'query', flags: dp.RECURSION_DESIRED | dp.CHECKING_DISABLED, questions: [{ name, type: 'A', class: 'IN' }],
  additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1400, flags: 0 }] });
const done = (buf) => { const r = dp.decode(buf); console.log(JSON.stringify({ id: r.id, cd: !!(r.flags & dp.CHECKING_DISABLED), answers: r.answers.filter((a) => a.type === 'A').map((a) => a.data) })); process.exit(0); };
setTimeout(() => { console.error('timeout'); process.exit(2); }, 5000);
if (proto === 'tcp') {
  const s = require('net').connect(53, server, () => { const l = Buffer.alloc(2); l.writeUInt16BE(q.length); s.write(Buffer.concat([l, q])); });
  let b = Buffer.alloc(0);
  s.on('data', (d) => { b = Buffer.concat([b, d]); if (b.length >= 2 && b.length >= 2 + b.readUInt16BE(0)) done(b.subarray(2, 2 + b.readUInt16BE(0))); });
} else {
  const s = require('dgram').createSocket('udp4');
  s.on('message', (m) => done(m));
  s.send(q, 53, server);
}`;

describe('names across hosts (dockerd 20.10 and 26.1)', () => {
  let etcdHost: Host;
  let outHost: Host;
  let etcd: HostEtcd;
  const hosts: Host[] = [];
  const drivers: Driver[] = [];
  const env = (): Record<string, string> => ({ VXNET_STORE: 'etcd', VXNET_ETCD_ENDPOINTS: etcd.endpoint, VXNET_VTEP_INTERFACE: 'eth0', VXNET_METRICS_ADDR: METRICS_ADDR });

  const lookup = nslookupA;

  async function rawQuery(h: Host, container: string, proto: 'udp' | 'tcp', name: string, id: number): Promise<{ id: number; cd: boolean; answers: string[] }> {
    const pid = await h.dockerOk(['inspect', '-f', '{{.State.Pid}}', container]);
    // Only the container's network namespace: the query leaves as the container's own would.
    const out = await h.execOk(['nsenter', '-t', pid, '-n', process.execPath, '-e', RAW_QUERY, proto, OUT_IP, name, String(id)]);
    return JSON.parse(out) as { id: number; cd: boolean; answers: string[] };
  }

  async function metric(h: Host, line: string): Promise<number> {
    const text = await h.execOk([process.execPath, '-e', SCRAPE]);
    const found = text.split('\n').find((l) => l.startsWith(`${line} `));
    return found === undefined ? 0 : Number(found.slice(line.length + 1));
  }

  beforeAll(async () => {
    etcdHost = await upHost('vxt-n0', '172.31.254.80', { docker: null });
    etcd = await startEtcdInHost(etcdHost);
    outHost = await upHost('vxt-nout', OUT_IP, { docker: null });
    startInHost(outHost, 'dnsmasq', ['-k', '--no-resolv', '--no-hosts', `--listen-address=${OUT_IP}`, '--bind-interfaces', `--address=/${OUTSIDE_NAME}/${OUTSIDE_ADDR}`,
      `--pid-file=${path.join(outHost.stateDir, 'dnsmasq.pid')}`, '--user=root']);
    const versions = ['20', '26', '20'] as const;
    process.env.VXT_DOCKERD_EXTRA = `--dns ${OUT_IP}`;
    try {
      for (let i = 0; i < versions.length; i++) hosts.push(await upHost(`vxt-n${i + 1}`, `172.31.254.8${i + 1}`, { docker: versions[i] }));
    } finally {
      delete process.env.VXT_DOCKERD_EXTRA;
    }
    for (const h of hosts) {
      await ensureTestImage(h);
      drivers.push(await startDriver(h, env()));
      await h.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', '10.93.0.0/24', '--gateway', '10.93.0.1', NET]);
      await h.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', '10.94.0.0/24', '--gateway', '10.94.0.1', NET2]);
    }
    const [n1, n2, n3] = hosts;
    await n1.dockerOk(['run', '-d', '--name', 'web', '--network', NET, '--network-alias', 'api', TEST_IMAGE, 'sleep', '3600']);
    await n2.dockerOk(['run', '-d', '--name', 'web2', '--network', NET, '--network-alias', 'api', TEST_IMAGE, 'sleep', '3600']);
    await n1.dockerOk(['run', '-d', '--name', 'secret', '--network', NET2, TEST_IMAGE, 'sleep', '3600']);
    for (const [h, c] of [[n1, 'c1'], [n2, 'c2'], [n3, 'c3']] as const) await h.dockerOk(['run', '-d', '--name', c, '--network', NET, TEST_IMAGE, 'sleep', '3600']);
  });

  afterAll(async () => {
    for (const h of hosts) {
      await h.docker(['rm', '-f', 'web', 'web2', 'webx', 'secret', 'c1', 'c2', 'c3', 'm2', 'm3', 'w6', 'c6']);
      await h.docker(['network', 'rm', NET, NET2, NET6.name]);
    }
    for (const d of drivers) await d.stop();
    await etcd?.stop();
    for (const h of hosts) await downHost(h);
    if (outHost) await downHost(outHost);
    if (etcdHost) await downHost(etcdHost);
  });

  it('resolves a container name, NAME.NETWORK and an alias from the other hosts, and ping by name works', async () => {
    const [n1, n2, n3] = hosts;
    const webIp = await containerIp(n1, NET, 'web');
    const web2Ip = await containerIp(n2, NET, 'web2');
    await eventually('web visible on n2', async () => (await lookup(n2, 'c2', 'web')).includes(webIp), 5000, 100);
    expect(await lookup(n2, 'c2', `web.${NET}`)).toEqual([webIp]);
    expect(await lookup(n1, 'c1', 'web2')).toEqual([web2Ip]);
    expect(await lookup(n3, 'c3', 'web')).toEqual([webIp]);
    expect(await n2.dockerOk(['exec', 'c2', 'ping', '-c', '1', '-W', '2', 'web'])).toMatch(/1 packets received/);
    expect(await n1.dockerOk(['exec', 'c1', 'ping', '-c', '1', '-W', '2', 'web2'])).toMatch(/1 packets received/);
  });

  it('answers an alias held on two hosts with both addresses, in rotating order, on every host', async () => {
    const [n1, n2, n3] = hosts;
    const both = [await containerIp(n1, NET, 'web'), await containerIp(n2, NET, 'web2')];
    // n3 holds none; n1 (20.10) and n2 (26.1) hold one each: there Docker alone would answer with
    // its local address only, vxnet's rule in the container namespace answers first.
    for (const [h, c] of [[n3, 'c3'], [n1, 'c1'], [n2, 'c2']] as const) {
      const first = await lookup(h, c, 'api');
      expect([...first].sort()).toEqual([...both].sort());
      const second = await lookup(h, c, 'api');
      expect(second).toEqual([...first].reverse());
    }
  });

  it('does not resolve a name of another network', async () => {
    expect(await lookup(hosts[1], 'c2', 'secret')).toEqual([]);
    expect(await lookup(hosts[1], 'c2', `secret.${NET2}`)).toEqual([]);
  });

  it('resolves the names of both vxnet networks of a container on two, across hosts (26.1 and 20.10)', async () => {
    const [n1, n2, n3] = hosts;
    const secretIp = await containerIp(n1, NET2, 'secret');
    const webIp = await containerIp(n1, NET, 'web');
    for (const [h, c] of [[n2, 'm2'], [n3, 'm3']] as const) {
      // Its queries reach vxnet on NET (the first network); NET2's names come from its scope.
      await h.dockerOk(['run', '-d', '--name', c, '--network', NET, TEST_IMAGE, 'sleep', '3600']);
      await h.dockerOk(['network', 'connect', NET2, c]);
      await eventually(`secret (on n1, ${NET2}) from ${c}`, async () => (await lookup(h, c, 'secret')).join() === secretIp, 5000, 100);
      expect(await lookup(h, c, `secret.${NET2}`)).toEqual([secretIp]);
      expect(await lookup(h, c, 'web')).toEqual([webIp]);
    }
    // A container on NET alone still does not see NET2's names.
    expect(await lookup(n2, 'c2', 'secret')).toEqual([]);
  });

  it('resolves outside names through the --dns upstream, UDP and TCP, with id and flags kept', async () => {
    for (const [h, c] of [[hosts[0], 'c1'], [hosts[1], 'c2']] as const) expect(await lookup(h, c, OUTSIDE_NAME)).toEqual([OUTSIDE_ADDR]);
    for (const proto of ['udp', 'tcp'] as const) {
      expect(await rawQuery(hosts[1], 'c2', proto, OUTSIDE_NAME, 4321)).toEqual({ id: 4321, cd: true, answers: [OUTSIDE_ADDR] });
      // The same path answers the network's own names, over TCP too.
      expect(await rawQuery(hosts[1], 'c2', proto, 'web', 77)).toEqual({ id: 77, cd: true, answers: [await containerIp(hosts[0], NET, 'web')] });
    }
  });

  it('forgets a stopped container everywhere, follows a restart and a rename', async () => {
    const [n1, n2] = hosts;
    await n1.dockerOk(['stop', '-t', '0', 'web']);
    await eventually('web gone on n2', async () => (await lookup(n2, 'c2', 'web')).length === 0, 3000, 50);
    await n1.dockerOk(['start', 'web']);
    const ip = await containerIp(n1, NET, 'web');
    await eventually('web back on n2', async () => (await lookup(n2, 'c2', 'web')).join() === ip, 3000, 50);
    await n1.dockerOk(['rename', 'web', 'webx']);
    await eventually('webx on n2', async () => (await lookup(n2, 'c2', 'webx')).join() === ip, 3000, 50);
    expect(await lookup(n2, 'c2', 'web')).toEqual([]);
  });

  it('shows the names it serves in `vxnet status` and counts queries in metrics', async () => {
    const [n1, n2] = hosts;
    const s = JSON.parse(await n1.execOk([process.execPath, MAIN_JS, 'status', '--json', '--socket', SOCKET])) as { names: { served: Array<{ names: string[] }>; upstreams: Array<{ upstream: string }> } };
    expect(s.names.upstreams.map((u) => u.upstream)).toEqual(['docker (127.0.0.11)', OUT_IP]);
    expect(s.names.served.map((n) => n.names[0]).sort()).toEqual(['c1', 'secret', 'webx']);
    expect(await n1.execOk([process.execPath, MAIN_JS, 'status', '--socket', SOCKET])).toMatch(/NAMES SERVED HERE\nNETWORK +NAMES[^\n]*\n(.*\n)*vxt-names +webx,/);
    expect(await metric(n2, 'vxnet_dns_answers_total{transport="udp"}')).toBeGreaterThan(0);
    expect(await metric(n2, 'vxnet_dns_answers_total{transport="tcp"}')).toBeGreaterThan(0);
    expect(await metric(n2, 'vxnet_dns_forwards_total{transport="udp"}')).toBeGreaterThan(0);
    expect(await metric(n2, 'vxnet_dns_forwards_total{transport="tcp"}')).toBeGreaterThan(0);
    expect(await metric(n2, 'vxnet_dns_queries_total{transport="udp"}')).toBeGreaterThanOrEqual(
      (await metric(n2, 'vxnet_dns_answers_total{transport="udp"}')) + (await metric(n2, 'vxnet_dns_forwards_total{transport="udp"}')),
    );
  });

  it('`vxnet doctor` passes with a --dns dockerd and says what to set on a loopback-resolver host', async () => {
    type Check = { name: string; status: string; detail: string; fix?: string };
    const namesCheck = async (h: Host, cmd: string[]): Promise<Check> => {
      const r = await h.exec(cmd, { env: cliEnv({ VXNET_HOST_ID: h.name, VXNET_DATA_DIR: path.join(h.stateDir, 'doctor-data') }), timeoutMs: 90_000 });
      return (JSON.parse(r.stdout).checks as Check[]).find((c) => c.name === 'names-dns') as Check;
    };
    const ok = await namesCheck(hosts[0], [process.execPath, MAIN_JS, 'doctor', '--json']);
    expect(ok).toMatchObject({ status: 'PASS', detail: expect.stringContaining(OUT_IP) });
    // A host like systemd-resolved's: only 127.0.0.53 in resolv.conf, no dockerd dns (the outside
    // namespace has no dockerd), resolved's real server in /run/systemd/resolve/resolv.conf.
    const fake = path.join(outHost.stateDir, 'resolv.loopback');
    const resolved = path.join(outHost.stateDir, 'resolv.resolved');
    fs.writeFileSync(fake, 'nameserver 127.0.0.53\noptions edns0\n');
    fs.writeFileSync(resolved, `nameserver ${OUT_IP}\n`);
    const script = `mkdir -p /run/systemd/resolve && mount --bind ${fake} /etc/resolv.conf && touch /run/systemd/resolve/resolv.conf && mount --bind ${resolved} /run/systemd/resolve/resolv.conf && exec ${process.execPath} ${MAIN_JS} doctor --json`;
    const loop = await namesCheck(outHost, ['unshare', '-m', 'sh', '-c', script]);
    expect(loop.status).toBe('WARN');
    expect(loop.detail).toContain('127.0.0.53');
    expect(loop.fix).toBe(`to give containers a resolver they can reach and vxnet a second path: in /etc/docker/daemon.json set "dns": ["${OUT_IP}"] (or dockerd --dns), then restart dockerd`);
  });

  it('answers AAAA across hosts on a dual-stack network (20.10 and 26.1), and ping over IPv6 by name works', async () => {
    const [n1, n2, n3] = hosts;
    for (const h of hosts) {
      await h.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', NET6.subnet, '--gateway', NET6.gateway,
        '--ipv6', '--subnet', NET6.subnet6, '--gateway', NET6.gateway6, NET6.name]);
    }
    await n1.dockerOk(['run', '-d', '--name', 'w6', '--network', NET6.name, TEST_IMAGE, 'sleep', '3600']);
    const v4 = await containerIp(n1, NET6.name, 'w6');
    const v6 = (await n1.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${NET6.name}").GlobalIPv6Address}}`, 'w6'])).trim();
    expect(v6).toMatch(/^fd13:95::/);
    for (const [h, c] of [[n2, 'c6'], [n3, 'c6']] as const) {
      await h.dockerOk(['run', '-d', '--name', c, '--network', NET6.name, TEST_IMAGE, 'sleep', '3600']);
      await eventually(`w6's AAAA from ${h.name}`, async () => (await nslookupAAAA(h, c, 'w6')).join() === v6, 5000, 100);
      expect(await nslookupAAAA(h, c, `w6.${NET6.name}`)).toEqual([v6]);
      expect(await nslookupA(h, c, 'w6')).toEqual([v4]);
      expect(await h.dockerOk(['exec', c, 'ping', '-6', '-c', '1', '-W', '2', 'w6'])).toMatch(/1 packets received/);
    }
  });

  it('answers names and outside names again after the driver is killed (-9) and restarted', async () => {
    const [n1, n2] = hosts;
    const ip = await containerIp(n1, NET, 'webx');
    await drivers[1].stop('SIGKILL');
    drivers[1] = await startDriver(n2, env());
    await eventually('webx answers on n2 after the restart', async () => (await lookup(n2, 'c2', 'webx')).join() === ip, 10_000, 100);
    expect(await lookup(n2, 'c2', OUTSIDE_NAME)).toEqual([OUTSIDE_ADDR]);
    // n2's own names are published again: visible from n1.
    expect(await lookup(n1, 'c1', 'web2')).toEqual([await containerIp(n2, NET, 'web2')]);
  });
});
