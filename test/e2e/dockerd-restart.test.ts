// dockerd restarts under a running vxnet, with and without live-restore. Containers that survive
// keep their addresses and keep talking; containers that died (with dockerd, or on their own
// while dockerd was away) leave no endpoint, address or veth behind, whether dockerd tells the
// driver (Leave, DeleteEndpoint) or not (the reconcile pass that follows dockerd's Activate).
import { Host, upHost, downHost, stopDocker, startDocker, run } from '../helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../helpers/image';
import { Driver, startDriver, socketFromOutside } from '../helpers/vxnet-in-host';
import { pluginCall } from '../helpers/plugin-client';
import { eventually } from '../helpers/eventually';
import { containerIp } from '../helpers/docker-inspect';

jest.setTimeout(300_000);

const NET = 'vxt-dr';
const SUBNET = '10.93.0.0/24';
const GRACE_S = 3;

interface Setup {
  host: Host;
  driver: Driver;
}

async function setUp(name: string, ip: string, dockerdArgs: string): Promise<Setup> {
  // host.sh passes VXT_DOCKERD_EXTRA to every start of this host's dockerd.
  process.env.VXT_DOCKERD_EXTRA = dockerdArgs;
  const host = await upHost(name, ip, { docker: '20' });
  await ensureTestImage(host);
  const driver = await startDriver(host, { VXNET_RECONCILE_GRACE: String(GRACE_S), VXNET_TEARDOWN_DELAY: '0' });
  await host.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', SUBNET, NET]);
  return { host, driver };
}

async function tearDown(s: Setup | undefined): Promise<void> {
  delete process.env.VXT_DOCKERD_EXTRA;
  if (!s) return;
  const all = (await s.host.docker(['ps', '-aq'])).stdout.split('\n').filter(Boolean);
  if (all.length) await s.host.docker(['rm', '-f', ...all]);
  await s.host.docker(['network', 'rm', NET]);
  await s.driver.stop();
  await downHost(s.host);
}

async function ipOf(h: Host, c: string): Promise<string> {
  return containerIp(h, NET, c);
}

async function pidOf(h: Host, c: string): Promise<string> {
  return h.dockerOk(['inspect', '-f', '{{.State.Pid}}', c]);
}

/** Ping from inside a container's network namespace, without dockerd (it may be down). */
async function pingFromPid(pid: string, ip: string): Promise<boolean> {
  const r = await run('nsenter', ['-t', pid, '-n', '--', 'busybox', 'ping', '-c', '2', '-W', '2', ip], { timeoutMs: 20_000 });
  return r.code === 0;
}

/**
 * The driver's books match dockerd: one endpoint and one container veth per running container
 * of the network, and a reconcile dry run finds nothing left to change.
 */
async function booksMatch(h: Host): Promise<string> {
  const running = (await h.docker(['ps', '-q', '--filter', `network=${NET}`])).stdout.split('\n').filter(Boolean).length;
  const sock = socketFromOutside(h);
  const status = await pluginCall(sock, 'Vxnet.Status', {});
  const nets = (status.body.Status as { networks: Array<{ subnets: string[]; endpoints: Record<string, number> }> }).networks;
  const endpoints = nets.find((n) => n.subnets.includes(SUBNET))?.endpoints[h.name] ?? 0;
  const veths = (await h.execOk(['ip', '-o', 'link', 'show'])).split('\n').filter((l) => / vxe-/.test(l)).length;
  const plan = (await pluginCall(sock, 'Vxnet.Reconcile', { DryRun: true })).body.Plan as Record<string, unknown>;
  const pending = Object.entries(plan).filter(([k, v]) => k !== 'dockerdAnswered' && Array.isArray(v) && v.length > 0);
  return `running ${running}, endpoints ${endpoints}, veths ${veths}, pending ${JSON.stringify(pending)}`;
}

async function expectBooksMatch(h: Host, running: number): Promise<void> {
  const want = `running ${running}, endpoints ${running}, veths ${running}, pending []`;
  let last = '';
  try {
    await eventually('driver books match dockerd', async () => (last = await booksMatch(h)) === want, 40_000, 500);
  } finally {
    expect(last).toBe(want);
  }
}

describe('dockerd restart without live-restore', () => {
  let s: Setup | undefined;
  beforeAll(async () => {
    s = await setUp('vxt-r2', '172.31.254.62', '');
  });
  afterAll(() => tearDown(s));

  it.each([
    ['stopped cleanly (SIGTERM)', false],
    ['killed (SIGKILL)', true],
  ])('dockerd %s: containers with a restart policy come back and talk, the others leave nothing', async (_what, kill) => {
    const { host } = s as Setup;
    await host.dockerOk(['run', '-d', '--name', 'ra', '--restart', 'always', '--network', NET, TEST_IMAGE, 'sleep', '3600']);
    await host.dockerOk(['run', '-d', '--name', 'rb', '--restart', 'always', '--network', NET, TEST_IMAGE, 'sleep', '3600']);
    await host.dockerOk(['run', '-d', '--name', 'rc', '--network', NET, TEST_IMAGE, 'sleep', '3600']);
    await expectBooksMatch(host, 3);

    await stopDocker(host, { kill });
    await startDocker(host);

    await eventually('ra and rb running again', async () => (await host.docker(['ps', '-q', '--filter', 'name=^/?r[ab]$'])).stdout.split('\n').filter(Boolean).length === 2, 60_000, 500);
    expect(await host.dockerOk(['inspect', '-f', '{{.State.Running}}', 'rc'])).toBe('false');
    // The new dockerd activated the plugin, and the driver compared its books with it again.
    const last = async (): Promise<string | undefined> =>
      ((await pluginCall(socketFromOutside(host), 'Vxnet.Status', {})).body.Status as { lastReconcile: { trigger: string } | null }).lastReconcile?.trigger;
    await eventually('a reconcile after dockerd started', async () => (await last()) === 'dockerd-start', 30_000, 500);
    expect(await host.dockerOk(['exec', 'ra', 'ping', '-c', '2', '-W', '2', await ipOf(host, 'rb')])).toMatch(/2 packets received/);
    await expectBooksMatch(host, 2);
    await host.dockerOk(['rm', '-f', 'ra', 'rb', 'rc']);
    await expectBooksMatch(host, 0);
  });
});

describe('dockerd restart with live-restore', () => {
  let s: Setup | undefined;
  beforeAll(async () => {
    s = await setUp('vxt-r3', '172.31.254.63', '--live-restore');
  });
  afterAll(() => tearDown(s));

  it('running containers keep their addresses and traffic; one that died meanwhile leaves nothing', async () => {
    const { host } = s as Setup;
    for (const c of ['ra', 'rb', 'rc']) await host.dockerOk(['run', '-d', '--name', c, '--network', NET, TEST_IMAGE, 'sleep', '3600']);
    const ips = { a: await ipOf(host, 'ra'), b: await ipOf(host, 'rb') };
    const pids = { a: await pidOf(host, 'ra'), c: await pidOf(host, 'rc') };
    await expectBooksMatch(host, 3);

    await stopDocker(host);
    // dockerd is gone; the containers and the driver's dataplane are not.
    expect(await pingFromPid(pids.a, ips.b)).toBe(true);
    process.kill(Number(pids.c), 'SIGKILL');
    await startDocker(host);

    expect({ a: await ipOf(host, 'ra'), b: await ipOf(host, 'rb') }).toEqual(ips);
    expect(await host.dockerOk(['exec', 'ra', 'ping', '-c', '2', '-W', '2', ips.b])).toMatch(/2 packets received/);
    await eventually('rc seen as exited', async () => (await host.dockerOk(['inspect', '-f', '{{.State.Running}}', 'rc'])) === 'false', 30_000, 500);
    await expectBooksMatch(host, 2);
  });
});
