// etcd trouble, done for real: a 3-member etcd cluster (host vxt-e0), a dockerd host running
// vxnet on it (vxt-e1) and a second vxnet host with namespace containers (vxt-e2).
//   - Members are SIGKILLed one at a time during container churn: no docker command may fail.
//   - All of etcd down: plugin calls fail within the 5 s bound with a clear error, containers
//     keep talking across hosts, and once etcd is back the same drivers (no restart) serve
//     calls again and their watches carry new endpoints to the other host.
import { Host, upHost, downHost } from '../helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../helpers/image';
import { Driver, driverLog, startDriver, socketFromOutside } from '../helpers/vxnet-in-host';
import { HostEtcdCluster, startEtcdClusterInHost } from '../helpers/etcd-in-host';
import { FakeContainer, FakeNetwork, createFakeNetwork, startFakeContainer, stopFakeContainer, pingFrom, removeFakeNetwork } from '../helpers/fake-container';
import { pluginCall } from '../helpers/plugin-client';
import { eventually } from '../helpers/eventually';
import { containerIp } from '../helpers/docker-inspect';

jest.setTimeout(300_000);

const NET = 'vxt-etcd';
const SUBNET = '10.92.0.0/24';
const CHURN_SECONDS = Number(process.env.VXT_ETCD_CHURN_SECONDS ?? 36);
const MAX_ALIVE = 3;

describe('vxnet through etcd trouble', () => {
  let etcdHost: Host;
  let etcd: HostEtcdCluster;
  let docker: Host;
  let plain: Host;
  const drivers: Driver[] = [];
  let fakeNet: FakeNetwork | null = null;
  const fakes: FakeContainer[] = [];
  let seq = 0;

  async function ipOf(c: string): Promise<string> {
    return containerIp(docker, NET, c);
  }

  beforeAll(async () => {
    etcdHost = await upHost('vxt-e0', '172.31.254.81', { docker: null });
    etcd = await startEtcdClusterInHost(etcdHost, 3);
    const env = { VXNET_STORE: 'etcd', VXNET_ETCD_ENDPOINTS: etcd.endpoints.join(','), VXNET_VTEP_INTERFACE: 'eth0' };
    docker = await upHost('vxt-e1', '172.31.254.82', { docker: '20' });
    await ensureTestImage(docker);
    drivers.push(await startDriver(docker, env));
    plain = await upHost('vxt-e2', '172.31.254.83', { docker: null });
    await plain.execOk(['sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=1']);
    await plain.execOk(['iptables', '-w', '-P', 'FORWARD', 'DROP']);
    drivers.push(await startDriver(plain, env));
    await docker.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', SUBNET, NET]);
    fakeNet = await createFakeNetwork(socketFromOutside(plain), SUBNET);
  });

  afterAll(async () => {
    // etcd may have been left down by a failed test: bring every member back for the cleanup calls.
    for (const m of etcd?.members ?? []) await m.restart().catch(() => undefined);
    if (docker) {
      const all = (await docker.docker(['ps', '-aq'])).stdout.split('\n').filter(Boolean);
      if (all.length) await docker.docker(['rm', '-f', ...all]);
      await docker.docker(['network', 'rm', NET]);
    }
    for (const f of fakes) await stopFakeContainer(f).catch(() => undefined);
    if (fakeNet) await removeFakeNetwork(socketFromOutside(plain), fakeNet).catch(() => undefined);
    for (const d of drivers) await d.stop();
    await etcd?.stop();
    for (const h of [docker, plain, etcdHost]) if (h) await downHost(h);
  });

  it(`fails no docker command while etcd members die one at a time (${CHURN_SECONDS} s of churn)`, async () => {
    const deadline = Date.now() + CHURN_SECONDS * 1000;
    const failures: string[] = [];
    const timeline: string[] = [];
    const mark = (what: string): number => timeline.push(`${new Date().toISOString()} ${what}`);
    let ops = 0;
    const killer = (async () => {
      // Each member in turn is down for a sixth of the run; two of three keep the quorum.
      const step = (CHURN_SECONDS * 1000) / 6;
      for (const [i, m] of etcd.members.entries()) {
        await new Promise((r) => setTimeout(r, step / 2));
        await m.kill();
        mark(`member ${i} killed`);
        await new Promise((r) => setTimeout(r, step));
        await m.restart();
        mark(`member ${i} restarted`);
      }
    })();
    // Each worker removes only its own containers: two `rm -f` of one container collide in dockerd.
    const worker = async (w: number): Promise<void> => {
      const mine: string[] = [];
      while (Date.now() < deadline) {
        const start = mine.length < MAX_ALIVE && (mine.length === 0 || Math.random() < 0.6);
        const name = start ? `e${w}-${++seq}` : mine.splice(Math.floor(Math.random() * mine.length), 1)[0];
        const args = start ? ['run', '-d', '--name', name, '--network', NET, TEST_IMAGE, 'sleep', '3600'] : ['rm', '-f', name];
        const r = await docker.docker(args, { timeoutMs: 60_000 });
        ops++;
        if (r.code !== 0) failures.push(`docker ${args.join(' ')}: ${r.stderr.trim()}`);
        if (r.code !== 0) mark(`failed: docker ${args.slice(0, 4).join(' ')}`);
        else if (start) mine.push(name);
      }
    };
    await Promise.all([killer, worker(1), worker(2)]);
    // eslint-disable-next-line no-console
    console.log(`etcd members killed in turn: ${ops} docker commands, ${failures.length} failed`);
    // A failure's story: when each member went and came back, and what the driver said about etcd.
    if (failures.length) console.log(`${timeline.join('\n')}\n${await storeComplaints(drivers[0])}`);
    expect(failures).toEqual([]);
    expect(ops).toBeGreaterThan(10);
    // What etcd holds for this host is what dockerd runs: nothing lost, nothing leaked.
    const running = (await docker.docker(['ps', '-q', '--filter', `network=${NET}`])).stdout.split('\n').filter(Boolean);
    const ips = await Promise.all(running.map((c) => ipOf(c)));
    expect(new Set(ips).size).toBe(ips.length);
    const status = await pluginCall(socketFromOutside(docker), 'Vxnet.Status', {});
    expect(status.status).toBe(200);
    const nets = (status.body.Status as { networks: Array<{ subnets: string[]; endpoints: Record<string, number> }> }).networks;
    const mine = nets.find((n) => n.subnets.includes(SUBNET));
    expect(mine?.endpoints['vxt-e1'] ?? 0).toBe(running.length);
  });

  it('with all of etcd down: calls fail within 5 s, traffic flows, and both come back without a restart', async () => {
    await docker.dockerOk(['run', '-d', '--name', 'stay', '--network', NET, TEST_IMAGE, 'sleep', '3600']);
    const stayIp = await ipOf('stay');
    fakes.push(await startFakeContainer(plain.name, socketFromOutside(plain), fakeNet as FakeNetwork, 'vxt-e2c1'));
    const fakeIp = fakes[0].address.split('/')[0];
    expect(await docker.dockerOk(['exec', 'stay', 'ping', '-c', '1', '-W', '2', fakeIp])).toMatch(/1 packets received/);

    for (const m of etcd.members) await m.kill();

    const t0 = Date.now();
    const call = await pluginCall(socketFromOutside(docker), 'IpamDriver.RequestAddress', { PoolID: `vxnet-local/${SUBNET}`, Address: '', Options: null });
    const failMs = Date.now() - t0;
    expect(call.status).toBe(500);
    expect(String(call.body.Error)).toMatch(/etcd/);
    expect(failMs).toBeLessThan(6000);
    const run = await docker.docker(['run', '-d', '--name', 'during', '--network', NET, TEST_IMAGE, 'sleep', '3600'], { timeoutMs: 120_000 });
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/etcd/);
    await docker.docker(['rm', '-f', 'during']);
    // The dataplane is the kernel's: what was programmed keeps working while etcd is away.
    expect(await docker.dockerOk(['exec', 'stay', 'ping', '-c', '3', '-W', '2', fakeIp])).toMatch(/3 packets received/);
    expect(await pingFrom(fakes[0], stayIp, 3)).toBe(true);

    await Promise.all(etcd.members.map((m) => m.restart()));
    const back = Date.now();
    // Vxnet.Status reads the store: the first answer is the driver serving through etcd again.
    await eventually('the driver reads etcd again', async () => (await pluginCall(socketFromOutside(docker), 'Vxnet.Status', {})).status === 200, 15_000);
    await docker.dockerOk(['run', '-d', '--name', 'after', '--network', NET, TEST_IMAGE, 'sleep', '3600']);
    const recoverMs = Date.now() - back;
    // A new endpoint on the other host reaches this one through the resumed watch.
    fakes.push(await startFakeContainer(plain.name, socketFromOutside(plain), fakeNet as FakeNetwork, 'vxt-e2c2'));
    const newIp = fakes[1].address.split('/')[0];
    expect(await docker.dockerOk(['exec', 'after', 'ping', '-c', '1', '-W', '2', newIp])).toMatch(/1 packets received/);
    // eslint-disable-next-line no-console
    console.log(`all etcd down: a plugin call failed after ${failMs} ms; after etcd returned, docker run succeeded within ${recoverMs} ms`);
  });
});

/** The driver's warnings and errors, one line each, with their times. */
async function storeComplaints(d: Driver): Promise<string> {
  return (await driverLog(d))
    .filter((l) => Number(l.level) >= 40)
    .map((l) => `${String(l.time)} ${String(l.msg)} ${String((l.err as { message?: string } | undefined)?.message ?? '')}`)
    .join('\n');
}
