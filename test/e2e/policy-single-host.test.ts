// Network policy on one host with the embedded store (the default `vxnet run`), dockerd 20.10:
// rules given as container labels and naming peers by container name or label work there too.
// Only the names publisher runs on a single host (no DNS part: Docker's resolver has every name),
// so no DNS redirect or listener of vxnet's appears.
import { Host, upHost, downHost } from '../helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../helpers/image';
import { Driver, startDriver, MAIN_JS } from '../helpers/vxnet-in-host';
import { containerIp } from '../helpers/docker-inspect';
import { eventually } from '../helpers/eventually';
import { SOCAT_MOUNTS, tcp, serve } from '../helpers/socat';

jest.setTimeout(300_000);

const NET = 'vxt-pol1h';
const CONTAINERS = ['srv', 'cli', 'other', 'tagged'];

describe('network policy on a single host (embedded store, labels)', () => {
  let host: Host;
  let driver: Driver;
  const ips: Record<string, string> = {};

  async function run(name: string, extra: string[] = []): Promise<void> {
    await host.dockerOk(['run', '-d', '--name', name, '--network', NET, ...SOCAT_MOUNTS, ...extra, TEST_IMAGE, 'sleep', '3600']);
    await serve(host, name);
    ips[name] = await containerIp(host, NET, name);
  }

  beforeAll(async () => {
    host = await upHost('vxt-p1h', '172.31.254.241', { docker: '20' });
    await ensureTestImage(host);
    driver = await startDriver(host);
    await host.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', '10.122.1.0/24', '-o', 'com.docker.network.bridge.enable_icc=false', NET]);
  });

  afterAll(async () => {
    if (!host) return;
    await host.docker(['rm', '-f', ...CONTAINERS]);
    await host.docker(['network', 'rm', NET]);
    const left = await host.exec(['nft', 'list', 'set', 'inet', 'vxnet-policy', 'policed_in']);
    await driver?.stop();
    await downHost(host);
    if (left.stdout.includes('10.122.')) throw new Error(`policy elements left:\n${left.stdout}`);
  });

  it('a label rule naming a container lets exactly it in, on its port', async () => {
    await run('srv', ['--label', 'vxnet.allow=cli:8000 label:role=client:8001']);
    await run('cli');
    await run('other');
    // The label is read from dockerd after the start (fail closed until then).
    await eventually('cli reaches srv', async () => (await tcp(host, 'cli', ips.srv, '8000', 1)) === ips.cli, 10_000, 200);
    expect(await tcp(host, 'cli', ips.srv, '8001', 1)).toBeNull(); // not its port
    expect(await tcp(host, 'other', ips.srv, '8000', 1)).toBeNull(); // not named
    expect(await tcp(host, 'srv', ips.other, '8000', 1)).toBeNull(); // isolated network, other has no rule
  });

  it('a label:KEY=VALUE source follows the labels of the peers', async () => {
    await run('tagged', ['--label', 'role=client']);
    await eventually('tagged reaches srv on 8001', async () => (await tcp(host, 'tagged', ips.srv, '8001', 1)) === ips.tagged, 10_000, 200);
    expect(await tcp(host, 'tagged', ips.srv, '8000', 1)).toBeNull();
  });

  it('status shows the rules; vxnet installs no DNS redirect or listener on a single host', async () => {
    const status = await host.execOk([process.execPath, MAIN_JS, 'status', '--socket', '/run/docker/plugins/vxnet.sock']);
    expect(status).toMatch(/cli:8000/);
    const nat = await host.execOk(['iptables-save', '-t', 'nat']);
    expect(nat).not.toMatch(/VXNET-DNS/);
    const listening = await host.execOk(['ss', '-lun']);
    expect(listening).not.toMatch(/:5354\b/);
  });
});
