// Calls dockerd makes while vxnet is broken are lost for good (dockerd never replays them):
// reconcile at the next start must find and clean what they would have cleaned, and keep
// everything that still lives. A stub answering every call with HTTP 500 stands in for the
// broken driver: dockerd logs the errors and moves on at once, as after a crash (a missing
// socket would cost ~15 s of retries per call).
import { execFileSync } from 'node:child_process';
import { Host, HostProcess, upHost, downHost, startInHost, stopInHost } from '../helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../helpers/image';
import { Driver, driverLog, startDriver, MAIN_JS } from '../helpers/vxnet-in-host';
import { containerIp } from '../helpers/docker-inspect';

jest.setTimeout(300_000);

const SOCKET = '/run/docker/plugins/vxnet.sock';
const BROKEN_PLUGIN = `
const http = require('http'); const fs = require('fs');
try { fs.unlinkSync(${JSON.stringify(SOCKET)}); } catch {}
http.createServer((req, res) => { req.resume(); req.on('end', () => {
  res.writeHead(500); res.end(JSON.stringify({ Err: 'vxnet is down', Error: 'vxnet is down' })); }); })
  .listen(${JSON.stringify(SOCKET)});`;

describe('reconcile after calls were lost', () => {
  let host: Host;
  let driver: Driver;
  const env = { VXNET_RECONCILE_GRACE: '0' };

  function hostLinks(): string[] {
    const links = JSON.parse(execFileSync('ip', ['-n', host.name, '-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string }>;
    return links.map((l) => l.ifname).filter((n) => n.startsWith('vx'));
  }
  async function ipOf(c: string, net: string): Promise<string> {
    return containerIp(host, net, c);
  }
  async function untilLogged(msg: string, after: number): Promise<Record<string, unknown>> {
    for (let i = 0; i < 100; i++) {
      const line = (await driverLog(driver)).slice(after).find((l) => l.msg === msg);
      if (line) return line;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`driver never logged "${msg}"`);
  }

  beforeAll(async () => {
    host = await upHost('vxt-r1', '172.31.254.61', { docker: '20' });
    await ensureTestImage(host);
    driver = await startDriver(host, env);
  });

  afterAll(async () => {
    if (!host) return;
    await host.docker(['rm', '-f', 'keep', 'lost', 'again', 'probe']);
    await host.docker(['network', 'rm', 'vxt-rc1', 'vxt-rc2']);
    await driver?.stop();
    await downHost(host);
  });

  it('cleans a stopped container and a removed network whose calls were lost, and keeps the rest', async () => {
    await host.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', '10.81.0.0/24', 'vxt-rc1']);
    await host.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', '10.82.0.0/24', 'vxt-rc2']);
    await host.dockerOk(['run', '-d', '--name', 'keep', '--network', 'vxt-rc1', TEST_IMAGE, 'sleep', '3600']);
    await host.dockerOk(['run', '-d', '--name', 'lost', '--network', 'vxt-rc1', TEST_IMAGE, 'sleep', '3600']);
    const lostIp = await ipOf('lost', 'vxt-rc1');
    const keepIp = await ipOf('keep', 'vxt-rc1');

    await driver.stop('SIGKILL');
    const broken: HostProcess = startInHost(host, process.execPath, ['-e', BROKEN_PLUGIN]);
    await new Promise((r) => setTimeout(r, 500));
    await host.dockerOk(['rm', '-f', 'lost']); // Revoke/Leave/DeleteEndpoint/ReleaseAddress: all refused
    await host.dockerOk(['network', 'rm', 'vxt-rc2']); // DeleteNetwork and the IPAM releases: refused
    // What dockerd left behind: the container's veth came back to the host under its own name.
    expect(hostLinks().filter((n) => n.startsWith('vxc-'))).toHaveLength(1);
    await stopInHost(broken);

    driver = await startDriver(host, env); // a fresh log file per start
    const done = await untilLogged('reconcile done', 0);
    expect(done.staleEndpoints).toEqual([expect.stringContaining(lostIp)]);
    expect(done.staleNetworks).toEqual([expect.stringContaining('subnet-10.82.0.0-24')]);
    // The lost container's anti-spoofing entries went with its endpoint; the kept one's stay.
    const v4 = await host.execOk(['nft', 'list', 'set', 'bridge', 'vxnet-antispoof', 'v4']);
    expect(v4).toContain(` . ${keepIp} `.trimEnd());
    expect(v4).not.toContain(lostIp);

    // The lost container's address is free again, the removed network's subnet too.
    await host.dockerOk(['run', '-d', '--name', 'again', '--network', 'vxt-rc1', '--ip', lostIp, TEST_IMAGE, 'sleep', '3600']);
    await host.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', '10.82.0.0/24', 'vxt-rc2']);
    // What still lives was kept: the other container is reachable.
    expect(await host.dockerOk(['exec', 'again', 'ping', '-c', '1', '-W', '2', keepIp])).toMatch(/1 packets received/);
    expect(hostLinks().filter((n) => n.startsWith('vxc-'))).toEqual([]);
  });

  it('shows orphans with --dry-run without touching them, and removes them without it', async () => {
    execFileSync('ip', ['-n', host.name, 'link', 'add', 'vxe-deadbeef00', 'type', 'veth', 'peer', 'name', 'vxc-deadbeef00']);
    const dry = await host.execOk([process.execPath, MAIN_JS, 'reconcile', '--dry-run', '--socket', SOCKET]);
    expect(dry).toMatch(/would change:/);
    expect(dry).toMatch(/links nothing owns: .*vxc-deadbeef00/);
    expect(hostLinks()).toContain('vxe-deadbeef00');
    const real = await host.execOk([process.execPath, MAIN_JS, 'reconcile', '--socket', SOCKET]);
    expect(real).toMatch(/links nothing owns: .*vxe-deadbeef00/);
    expect(hostLinks()).not.toContain('vxe-deadbeef00');
    expect(hostLinks()).not.toContain('vxc-deadbeef00');
  });

  it("puts back a container's anti-spoofing entries removed behind its back (dry run first)", async () => {
    const keepIp = await ipOf('keep', 'vxt-rc1');
    const line = (await host.execOk(['nft', 'list', 'set', 'bridge', 'vxnet-antispoof', 'v4'])).split('\n').find((l) => l.includes(keepIp)) as string;
    const element = /"vxe-\S+" \. \S+ \. [0-9.]+/.exec(line)?.[0] as string;
    await host.execOk(['nft', 'delete', 'element', 'bridge', 'vxnet-antispoof', 'v4', `{ ${element} }`]);
    // Without it, keep's port drops its IPv4 frames.
    expect((await host.docker(['exec', 'keep', 'ping', '-c', '1', '-W', '1', await ipOf('again', 'vxt-rc1')])).code).not.toBe(0);
    const dry = await host.execOk([process.execPath, MAIN_JS, 'reconcile', '--dry-run', '--socket', SOCKET]);
    expect(dry).toMatch(new RegExp(`anti-spoofing table and entries synced with the store: .*\\+ v4 vxe-\\S+ \\S+ ${keepIp.replace(/\./g, '\\.')}`));
    expect(await host.execOk(['nft', 'list', 'set', 'bridge', 'vxnet-antispoof', 'v4'])).not.toContain(keepIp);
    await host.execOk([process.execPath, MAIN_JS, 'reconcile', '--socket', SOCKET]);
    expect(await host.execOk(['nft', 'list', 'set', 'bridge', 'vxnet-antispoof', 'v4'])).toContain(keepIp);
    expect(await host.dockerOk(['exec', 'keep', 'ping', '-c', '1', '-W', '2', await ipOf('again', 'vxt-rc1')])).toMatch(/1 packets received/);
  });

  it('recreates the devices of a network whose bridge was deleted behind its back', async () => {
    const bridge = hostLinks().find((n) => n.startsWith('vxb-')) as string;
    execFileSync('ip', ['-n', host.name, 'link', 'del', bridge]);
    const out = await host.execOk([process.execPath, MAIN_JS, 'reconcile', '--socket', SOCKET]);
    expect(out).toMatch(/networks whose devices are recreated: subnet-10.81.0.0-24/);
    expect(hostLinks()).toContain(bridge);
    // The surviving containers' veths are back on it: they reach each other again.
    const keepIp = await ipOf('keep', 'vxt-rc1');
    expect(await host.dockerOk(['exec', 'again', 'ping', '-c', '1', '-W', '2', keepIp])).toMatch(/1 packets received/);
  });
});
