// Swarm across 3 simulated hosts, each with dockerd 20.10 and the managed plugin (swarm refuses
// classic plugins) in global scope over one etcd: `docker network create --attachable` on the
// manager goes through swarm's allocator (RequestPool/RequestAddress in the global space,
// AllocateNetwork), workers CreateNetwork with the same NetworkID, and a 3-replica service
// (dnsrr: the kernel here has no IPVS for VIPs) gets one task per host; tasks reach each other.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Host, upHost, downHost, run, describeFailure, REPO_ROOT } from '../helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../helpers/image';
import { HostEtcd, startEtcdInHost } from '../helpers/etcd-in-host';
import { eventually } from '../helpers/eventually';
import { containerIp, vxLinks } from '../helpers/docker-inspect';
import { dnsReplies } from '../helpers/dns-replies';

jest.setTimeout(600_000);

const BUILD_SH = path.join(REPO_ROOT, 'docker-plugin/build.sh');
const PLUGIN = 'vxnet/vxnet:latest';
const NET = 'vxt-swnet';
const SUBNET = '10.95.0.0/24';
const SERVICE = 'vxtsw';


interface NetInspect {
  Scope: string;
  Driver: string;
  Attachable: boolean;
  IPAM: { Driver: string; Config: Array<{ Subnet: string }> };
  Options: Record<string, string>;
}

/** The service's task container on a host, with its address on the network. */
async function taskOn(host: Host): Promise<{ id: string; ip: string } | null> {
  const id = (await host.dockerOk(['ps', '-q', '--filter', `label=com.docker.swarm.service.name=${SERVICE}`])).split('\n')[0];
  if (!id) return null;
  const ip = await containerIp(host, NET, id);
  return { id, ip };
}

describe('swarm with the managed plugin in global scope', () => {
  let etcdHost: Host;
  let etcd: HostEtcd;
  const hosts: Host[] = [];
  let pluginDir = '';

  beforeAll(async () => {
    etcdHost = await upHost('vxt-w0', '172.31.254.84', { docker: null });
    etcd = await startEtcdInHost(etcdHost);
    for (let i = 1; i <= 3; i++) hosts.push(await upHost(`vxt-w${i}`, `172.31.254.8${4 + i}`, { docker: '20' }));
    pluginDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vxt-swplugin-'));
    const r = await run('bash', [BUILD_SH, '--no-build', '--no-create', '--dir', pluginDir], { timeoutMs: 300_000 });
    if (r.code !== 0) throw describeFailure('docker-plugin/build.sh', r);
    for (const h of hosts) {
      await ensureTestImage(h);
      const data = path.join(h.stateDir, 'plugin-data');
      fs.mkdirSync(data, { recursive: true });
      await h.dockerOk(['plugin', 'create', PLUGIN, pluginDir], { timeoutMs: 300_000 });
      await h.dockerOk([
        'plugin', 'set', PLUGIN,
        `data.source=${data}`,
        'VXNET_STORE=etcd',
        `VXNET_ETCD_ENDPOINTS=${etcd.endpoint}`,
        'VXNET_VTEP_INTERFACE=eth0',
        `VXNET_HOST_ID=${h.name}`,
        'VXNET_SCOPE=global',
      ]);
      await h.dockerOk(['plugin', 'enable', PLUGIN], { timeoutMs: 120_000 });
    }
    const [manager, ...workers] = hosts;
    await manager.dockerOk(['swarm', 'init', '--advertise-addr', manager.ip]);
    const token = await manager.dockerOk(['swarm', 'join-token', '-q', 'worker']);
    for (const w of workers) await w.dockerOk(['swarm', 'join', '--advertise-addr', w.ip, '--token', token, `${manager.ip}:2377`]);
  });

  afterAll(async () => {
    const [manager] = hosts;
    if (manager) {
      await manager.docker(['service', 'rm', SERVICE]);
      await manager.docker(['network', 'rm', NET]);
    }
    for (const h of [...hosts].reverse()) {
      await h.docker(['swarm', 'leave', '--force']);
      const all = (await h.docker(['ps', '-aq'])).stdout.split('\n').filter(Boolean);
      if (all.length) await h.docker(['rm', '-f', ...all]);
      await h.docker(['plugin', 'disable', '-f', PLUGIN]);
      await h.docker(['plugin', 'rm', '-f', PLUGIN]);
    }
    await etcd?.stop();
    for (const h of [...hosts, etcdHost]) if (h) await downHost(h);
    if (pluginDir) fs.rmSync(pluginDir, { recursive: true, force: true });
  });

  it('creates an attachable swarm network through the plugin on the manager', async () => {
    const [manager] = hosts;
    await manager.dockerOk(['network', 'create', '-d', PLUGIN, '--ipam-driver', PLUGIN, '--attachable', '--subnet', SUBNET, '-o', 'vxnet.network=swarm-demo', NET]);
    // The manager's allocator works after `network create` returns: wait until it has run.
    const inspect = async (): Promise<NetInspect> => JSON.parse(await manager.dockerOk(['network', 'inspect', NET]))[0];
    await eventually('swarm allocated the network', async () => (await inspect()).Driver === PLUGIN, 30_000, 200);
    const net = await inspect();
    expect(net).toMatchObject({ Scope: 'swarm', Driver: PLUGIN, Attachable: true, IPAM: { Driver: PLUGIN } });
    expect(net.IPAM.Config[0].Subnet).toBe(SUBNET);
    // AllocateNetwork echoed the options: they reach the workers as the network's options.
    expect(net.Options['vxnet.network']).toBe('swarm-demo');
  });

  it('runs one task per host, and the tasks reach each other across hosts', async () => {
    const [manager] = hosts;
    await manager.dockerOk(
      ['service', 'create', '--detach', '--name', SERVICE, '--replicas', '3', '--replicas-max-per-node', '1', '--endpoint-mode', 'dnsrr',
        '--no-resolve-image', '--network', NET, TEST_IMAGE, 'sleep', '3600'],
      { timeoutMs: 120_000 },
    );
    const tasks: Array<{ id: string; ip: string }> = [];
    await eventually('a running task on every host', async () => {
      tasks.length = 0;
      for (const h of hosts) {
        const t = await taskOn(h);
        if (!t || !t.ip) return false;
        tasks.push(t);
      }
      return true;
    }, 120_000, 1000);
    const ips = tasks.map((t) => t.ip);
    expect(new Set(ips).size).toBe(3);
    for (const ip of ips) expect(ip.startsWith('10.95.0.')).toBe(true);
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 3; j++) {
        if (i === j) continue;
        const out = await hosts[i].dockerOk(['exec', tasks[i].id, 'ping', '-c', '2', '-W', '2', ips[j]]);
        expect(out).toMatch(/2 packets received/);
      }
    }
    // Every host runs the network on one VXLAN device: the same VNI everywhere.
    const vnis = await Promise.all(hosts.map(async (h) => (await vxLinks(h)).filter((n) => n.startsWith('vxv-')).sort().join(',')));
    expect(new Set(vnis).size).toBe(1);
    expect(vnis[0]).toMatch(/^vxv-\d+$/);
  });

  it("answers names once, from swarm's own DNS: vxnet's name service is off in global scope", async () => {
    const tasks: Array<{ id: string; ip: string; pid: string }> = [];
    for (const h of hosts) {
      const t = (await taskOn(h)) as { id: string; ip: string };
      tasks.push({ ...t, pid: await h.dockerOk(['inspect', '-f', '{{.State.Pid}}', t.id]) });
    }
    const all = tasks.map((t) => t.ip).sort();
    for (const [i, h] of hosts.entries()) {
      // Nothing of vxnet's on the query's way: no redirect in the task's namespace, no
      // interception on the host, no listener on vxnet's DNS port.
      expect(await h.execOk(['nsenter', '-t', tasks[i].pid, '-n', 'iptables-save'])).not.toContain('vxnet-dns');
      expect(await h.execOk(['iptables-save', '-t', 'nat'])).not.toContain('VXNET-DNS');
      expect(await h.execOk(['ss', '-Hlnu', 'sport = :5354'])).toBe('');
      // The service name (dnsrr): one reply, every task once. tasks.NAME: the same set.
      for (const name of [SERVICE, `tasks.${SERVICE}`]) {
        const replies = await dnsReplies(h, tasks[i].pid, name);
        expect(replies).toHaveLength(1);
        expect(replies[0].rcode).toBe('NOERROR');
        expect([...replies[0].answers].sort()).toEqual(all);
      }
    }
  });

  it('scales down: every task goes', async () => {
    const [manager] = hosts;
    await manager.dockerOk(['service', 'rm', SERVICE]);
    await eventually('every task gone', async () => {
      for (const h of hosts) if (await taskOn(h)) return false;
      return true;
    }, 60_000, 1000);
  });

  it("keeps a worker's network warm between two docker run --rm (dockerd deletes and re-creates it around each)", async () => {
    const worker = hosts[1];
    const bridgeIndex = async (): Promise<number | null> => {
      const links = JSON.parse(await worker.execOk(['ip', '-j', 'link', 'show'])) as Array<{ ifname: string; ifindex: number }>;
      return links.find((l) => l.ifname.startsWith('vxb-'))?.ifindex ?? null;
    };
    const run = (): Promise<string> => worker.dockerOk(['run', '--rm', '--network', NET, TEST_IMAGE, 'sh', '-c', 'ip -o -4 addr show eth0']);
    expect(await run()).toMatch(/inet 10\.95\.0\.\d+\//);
    // dockerd has deleted the network on this host again; vxnet's bridge stays for the next run.
    const first = await bridgeIndex();
    expect(first).not.toBeNull();
    expect(await run()).toMatch(/inet 10\.95\.0\.\d+\//);
    expect(await bridgeIndex()).toBe(first);
    // Left alone, the worker's devices go after VXNET_TEARDOWN_DELAY (5 s).
    await eventually('worker bridge gone after the delay', async () => (await bridgeIndex()) === null, 60_000, 500);
  });

  it('removes the network without leaving devices behind', async () => {
    const [manager] = hosts;
    await manager.dockerOk(['network', 'rm', NET]);
    await eventually('no vxnet device on any host', async () => {
      for (const h of hosts) if ((await vxLinks(h)).length > 0) return false;
      return true;
    }, 60_000, 1000);
  });
});
