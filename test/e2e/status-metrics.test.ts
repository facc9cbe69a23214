// `vxnet status` and the metrics endpoint of a real driver, run as an operator runs it next to a
// real dockerd: the CLI talks to the plugin socket, Prometheus would scrape VXNET_METRICS_ADDR.
import { Host, upHost, downHost } from '../helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../helpers/image';
import { Driver, driverLog, startDriver, MAIN_JS } from '../helpers/vxnet-in-host';
import { scrapeMetric } from '../helpers/metrics';
import type { StatusReport } from '../../src/network/status';

jest.setTimeout(300_000);

const SOCKET = '/run/docker/plugins/vxnet.sock';
const METRICS_ADDR = '127.0.0.1:9477';

describe('vxnet status and /metrics against a running driver', () => {
  let host: Host;
  let driver: Driver;

  const metric = (line: string): Promise<number | undefined> => scrapeMetric(host, METRICS_ADDR, line);

  beforeAll(async () => {
    host = await upHost('vxt-o1', '172.31.254.95', { docker: '20' });
    await ensureTestImage(host);
    // A VTEP on the embedded store: the host registers under a lease and runs peer sync, as on etcd.
    driver = await startDriver(host, { VXNET_METRICS_ADDR: METRICS_ADDR, VXNET_VTEP_IP: host.ip });
    for (let i = 0; i < 100 && !(await driverLog(driver)).some((l) => l.msg === 'reconcile done'); i++) await new Promise((r) => setTimeout(r, 100));
    await host.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', '10.95.0.0/24', 'vxt-on1']);
    await host.dockerOk(['run', '-d', '--name', 'o1', '--network', 'vxt-on1', TEST_IMAGE, 'sleep', '3600']);
  });

  afterAll(async () => {
    if (!host) return;
    await host.docker(['rm', '-f', 'o1']);
    await host.docker(['network', 'rm', 'vxt-on1']);
    await driver?.stop();
    await downHost(host);
  });

  it('shows this host, its lease, the network with its endpoint and the last reconcile as JSON', async () => {
    const s = JSON.parse(await host.execOk([process.execPath, MAIN_JS, 'status', '--json', '--socket', SOCKET])) as StatusReport;
    expect(s.self).toEqual({ host: 'vxt-o1', vtep: '172.31.254.95', store: 'embedded', version: expect.any(String) });
    expect(s.hosts).toEqual([{ host: 'vxt-o1', vtep: '172.31.254.95', lease: 'alive', deadSince: null, releaseClaimedBy: null, endpoints: 1 }]);
    expect(s.networks).toEqual([{ network: 'subnet-10.95.0.0-24', vni: 256, subnets: ['10.95.0.0/24'], mtu: expect.any(Number), internal: false, endpoints: { 'vxt-o1': 1 } }]);
    // Alone on the network: its VXLAN device is there, with nothing remote to program.
    expect(s.peers).toEqual([{ lnet: 'subnet-10.95.0.0-24', vni: 256, fdb: 0, neigh: 0, vteps: 0 }]);
    // Two passes ran: at start-up, and when dockerd first activated the plugin (an Activate is how
    // a restarted dockerd shows itself, so every one is followed by a pass).
    expect(s.lastReconcile).toMatchObject({ trigger: 'dockerd-start', error: null, plan: { dockerdAnswered: true } });
  });

  it('prints the same as tables', async () => {
    const text = await host.execOk([process.execPath, MAIN_JS, 'status', '--socket', SOCKET]);
    expect(text).toMatch(/^host {5}vxt-o1\nvtep {5}172\.31\.254\.95\nstore {4}embedded\n/);
    expect(text).toMatch(/\nvxt-o1 +172\.31\.254\.95 +alive +- +1\n/);
    expect(text).toMatch(/\nsubnet-10\.95\.0\.0-24 +256 +10\.95\.0\.0\/24 +\d+ +no +vxt-o1=1\n/);
    expect(text).toMatch(/\nLAST RECONCILE\n\S+ \(dockerd-start\): nothing to change$/);
  });

  it('serves the plugin calls dockerd made, the addresses in use and the reconcile on /metrics', async () => {
    expect(await metric('vxnet_plugin_calls_total{method="NetworkDriver.CreateNetwork",outcome="ok"}')).toBe(1);
    expect(await metric('vxnet_plugin_calls_total{method="NetworkDriver.Join",outcome="ok"}')).toBe(1);
    expect(await metric('vxnet_plugin_call_duration_seconds_bucket{le="+Inf",method="NetworkDriver.Join",outcome="ok"}')).toBe(1);
    expect(await metric('vxnet_ipam_addresses_in_use{pool="vxnet-local/10.95.0.0/24",kind="gateway"}')).toBe(1);
    expect(await metric('vxnet_ipam_addresses_in_use{pool="vxnet-local/10.95.0.0/24",kind="container"}')).toBe(1);
    expect(await metric('vxnet_peer_entries{network="subnet-10.95.0.0-24",kind="fdb"}')).toBe(0);
    expect(await metric('vxnet_reconcile_runs_total{outcome="ok"}')).toBe(2);
    expect(await metric('vxnet_store_call_duration_seconds_count{op="createIfAbsent",outcome="ok"}')).toBeGreaterThan(0);
  });

  it('says in one line that no driver answers on a socket nobody serves', async () => {
    const r = await host.exec([process.execPath, MAIN_JS, 'status', '--socket', '/run/docker/plugins/nobody.sock']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^vxnet: status failed: no driver answers on \/run\/docker\/plugins\/nobody\.sock: .*ENOENT.*\n$/);
  });
});
