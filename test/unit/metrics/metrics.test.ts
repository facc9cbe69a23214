// Metrics as the daemon wires them: store calls timed by the decorator, plugin calls counted at
// the server's onResponse hook, scraped over real HTTP from serveMetrics.
import { Metrics, serveMetrics, MetricsServer, boundPools, OTHER_POOLS } from '../../../src/metrics';
import { timedStore } from '../../../src/store/timed';
import { createLogger } from '../../../src/log';
import type { Store } from '../../../src/store/types';
import type { ReconcilePlan } from '../../../src/network/reconcile';
import type { ProgrammedPeers } from '../../../src/network/peers';
import type { AddressUsage } from '../../../src/ipam/ipam';
import { pluginApp, PluginApp, EP_ID } from '../../helpers/plugin-app';
import { recordingDataplane } from '../../helpers/recording-dataplane';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';
import { createNetwork, runContainer } from '../../helpers/docker-flow';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The text exposition format, one sample per line (comments skipped). */
function parse(text: string): Sample[] {
  return text
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(l);
      if (!m) throw new Error(`not a sample line: ${l}`);
      const labels: Record<string, string> = {};
      for (const [, k, v] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
      return { name: m[1], labels, value: Number(m[3]) };
    });
}

/** The value of the one sample with exactly these labels, or undefined. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const want = JSON.stringify(Object.entries(labels).sort());
  return samples.find((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want)?.value;
}

async function get(server: MetricsServer, path: string): Promise<{ status: number; type: string | null; text: string }> {
  const res = await fetch(`http://${server.addr.host}:${server.addr.port}${path}`);
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
}

describe('src/metrics', () => {
  let raw: Store;
  let metrics: Metrics;
  let p: PluginApp;
  let server: MetricsServer;
  let peers: ProgrammedPeers[];
  let usage: (() => Promise<AddressUsage[]>) | null;

  beforeEach(async () => {
    raw = tmpEmbeddedStore();
    metrics = new Metrics(createLogger('silent'));
    p = pluginApp(timedStore(raw, metrics.observeStore), recordingDataplane(), { extras: { observeCall: metrics.observeCall } });
    peers = [];
    usage = null;
    metrics.setSources({ addressUsage: () => (usage ?? (() => p.ipam.addressUsage()))(), programmedPeers: () => peers });
    server = await serveMetrics(metrics, { host: '127.0.0.1', port: 0 }, createLogger('silent'));
  });
  afterEach(async () => {
    await server.close();
    await p.app.close();
    await raw.close();
  });

  it('counts plugin calls by method and outcome, errors by code, and times store calls', async () => {
    const net = await createNetwork(p, { subnet: '10.123.0.0/24' });
    const c = await runContainer(p, net, EP_ID);
    expect((await p.call('/IpamDriver.RequestAddress', { PoolID: net.poolId, Address: c.address.split('/')[0], Options: null })).status).toBe(500);
    expect((await p.call('/NetworkDriver.CreateEndpoint', {})).status).toBe(500);
    expect((await p.call('/NetworkDriver.Frobnicate', {})).status).toBe(404);

    const res = await get(server, '/metrics');
    expect(res.status).toBe(200);
    expect(res.type).toMatch(/^text\/plain; version=0\.0\.4/);
    const s = parse(res.text);
    const calls = (method: string, outcome: string): number | undefined => value(s, 'vxnet_plugin_calls_total', { method, outcome });
    expect(calls('IpamDriver.GetDefaultAddressSpaces', 'ok')).toBe(1);
    expect(calls('IpamDriver.RequestPool', 'ok')).toBe(1);
    expect(calls('IpamDriver.RequestAddress', 'ok')).toBe(2);
    expect(calls('IpamDriver.RequestAddress', 'error')).toBe(1);
    expect(calls('NetworkDriver.CreateNetwork', 'ok')).toBe(1);
    expect(calls('NetworkDriver.CreateEndpoint', 'ok')).toBe(1);
    expect(calls('NetworkDriver.CreateEndpoint', 'error')).toBe(1);
    expect(calls('NetworkDriver.Join', 'ok')).toBe(1);
    expect(calls('NetworkDriver.ProgramExternalConnectivity', 'ok')).toBe(1);
    expect(calls('unknown', 'error')).toBe(1);
    expect(s.filter((x) => x.name === 'vxnet_plugin_calls_total').reduce((n, x) => n + x.value, 0)).toBe(11);

    expect(s.filter((x) => x.name === 'vxnet_plugin_errors_total')).toEqual([
      { name: 'vxnet_plugin_errors_total', labels: { method: 'IpamDriver.RequestAddress', code: 'VXNET_ERR_ADDRESS_IN_USE' }, value: 1 },
      { name: 'vxnet_plugin_errors_total', labels: { method: 'NetworkDriver.CreateEndpoint', code: 'VXNET_ERR_BAD_REQUEST' }, value: 1 },
      { name: 'vxnet_plugin_errors_total', labels: { method: 'unknown', code: 'VXNET_ERR_BAD_REQUEST' }, value: 1 },
    ]);

    // Histograms: every bucket up to +Inf, and a count equal to the calls counted.
    const joinBuckets = s.filter((x) => x.name === 'vxnet_plugin_call_duration_seconds_bucket' && x.labels.method === 'NetworkDriver.Join');
    expect(joinBuckets.map((b) => b.labels.le)).toEqual(['0.0005', '0.001', '0.0025', '0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '+Inf']);
    expect(value(s, 'vxnet_plugin_call_duration_seconds_bucket', { method: 'NetworkDriver.Join', outcome: 'ok', le: '+Inf' })).toBe(1);
    expect(value(s, 'vxnet_plugin_call_duration_seconds_count', { method: 'IpamDriver.RequestAddress', outcome: 'ok' })).toBe(2);
    expect(value(s, 'vxnet_store_call_duration_seconds_bucket', { op: 'createIfAbsent', outcome: 'ok', le: '+Inf' })).toBeGreaterThan(0);
    expect(value(s, 'vxnet_store_call_duration_seconds_count', { op: 'get', outcome: 'ok' })).toBeGreaterThan(0);

    // Read from the store at scrape time: the gateway and the container.
    expect(value(s, 'vxnet_ipam_addresses_in_use', { pool: 'vxnet-local/10.123.0.0/24', kind: 'gateway' })).toBe(1);
    expect(value(s, 'vxnet_ipam_addresses_in_use', { pool: 'vxnet-local/10.123.0.0/24', kind: 'container' })).toBe(1);
    // The process' own metrics come along (memory, CPU, event loop).
    expect(value(s, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
  });

  it('reports peer entries and reconcile changes, with every kind present from the start', async () => {
    let s = parse(await metrics.text());
    expect(value(s, 'vxnet_reconcile_changes_total', { kind: 'staleEndpoints' })).toBe(0);
    expect(value(s, 'vxnet_reconcile_runs_total', { outcome: 'error' })).toBe(0);
    expect(s.filter((x) => x.name === 'vxnet_peer_entries')).toEqual([]);

    peers = [{ lnet: 'span', vni: 300, fdb: 3, neigh: 2, vteps: 1 }];
    const plan: ReconcilePlan = {
      dockerdAnswered: true,
      staleNetworks: [],
      staleEndpoints: ['aaa (10.0.0.2/24)', 'bbb (10.0.0.3/24)'],
      firewall: [],
      antispoof: [],
      repairNetworks: [],
      stalePorts: [],
      repairPorts: [],
      orphanPortRules: [],
      orphanLinks: ['vxe-dead'],
      orphanRules: [],
      orphanAddresses: [],
      policy: [],
    };
    metrics.observeReconcile(plan);
    metrics.observeReconcile({ ...plan, dockerdAnswered: false, staleEndpoints: [], orphanLinks: [] });
    metrics.observeReconcile(null);

    s = parse(await metrics.text());
    expect(value(s, 'vxnet_peer_entries', { network: 'span', kind: 'fdb' })).toBe(3);
    expect(value(s, 'vxnet_peer_entries', { network: 'span', kind: 'neigh' })).toBe(2);
    expect(value(s, 'vxnet_reconcile_changes_total', { kind: 'staleEndpoints' })).toBe(2);
    expect(value(s, 'vxnet_reconcile_changes_total', { kind: 'orphanLinks' })).toBe(1);
    expect(value(s, 'vxnet_reconcile_changes_total', { kind: 'staleNetworks' })).toBe(0);
    expect(value(s, 'vxnet_reconcile_runs_total', { outcome: 'ok' })).toBe(1);
    expect(value(s, 'vxnet_reconcile_runs_total', { outcome: 'kernel_only' })).toBe(1);
    expect(value(s, 'vxnet_reconcile_runs_total', { outcome: 'error' })).toBe(1);
    expect(value(s, 'vxnet_reconcile_last_run_timestamp_seconds')).toBeCloseTo(Date.now() / 1000, -1);

    peers = [];
    expect(parse(await metrics.text()).filter((x) => x.name === 'vxnet_peer_entries')).toEqual([]);
  });

  it('keeps serving every other metric when the store cannot be read', async () => {
    await createNetwork(p, { subnet: '10.123.0.0/24' });
    usage = () => Promise.reject(new Error('etcd unreachable'));
    const res = await get(server, '/metrics');
    expect(res.status).toBe(200);
    const s = parse(res.text);
    expect(s.filter((x) => x.name === 'vxnet_ipam_addresses_in_use')).toEqual([]);
    expect(value(s, 'vxnet_plugin_calls_total', { method: 'NetworkDriver.CreateNetwork', outcome: 'ok' })).toBe(1);
  });

  it('answers 404 for anything but GET /metrics', async () => {
    expect((await get(server, '/')).status).toBe(404);
    expect((await get(server, '/metrics/x')).status).toBe(404);
    expect((await get(server, '/metrics?x=1')).status).toBe(200);
    const post = await fetch(`http://127.0.0.1:${server.addr.port}/metrics`, { method: 'POST' });
    expect(post.status).toBe(404);
    await post.text();
  });

  it('stops the start with one clear line when the address is taken', async () => {
    await expect(serveMetrics(metrics, server.addr, createLogger('silent'))).rejects.toThrow(
      new RegExp(`^cannot serve metrics on 127\\.0\\.0\\.1:${server.addr.port}: .*EADDRINUSE`),
    );
  });

  it('keeps two daemons in one process apart (private registries)', async () => {
    const other = new Metrics(createLogger('silent'));
    metrics.observeCall('Plugin.Activate', 0.001, null);
    expect(value(parse(await other.text()), 'vxnet_plugin_calls_total', { method: 'Plugin.Activate', outcome: 'ok' })).toBeUndefined();
    expect(value(parse(await metrics.text()), 'vxnet_plugin_calls_total', { method: 'Plugin.Activate', outcome: 'ok' })).toBe(1);
  });
});

describe('src/metrics/metrics.ts boundPools', () => {
  const u = (poolId: string, kind: AddressUsage['kind'], count: number): AddressUsage => ({ poolId, kind, count });

  it('leaves a small number of pools alone', () => {
    const usage = [u('a', 'container', 1), u('b', 'gateway', 1)];
    expect(boundPools(usage, 2)).toBe(usage);
  });

  it('keeps the largest pools by name and sums the rest per kind', () => {
    const usage = [u('a', 'container', 5), u('a', 'gateway', 1), u('b', 'container', 1), u('c', 'container', 9), u('d', 'container', 2), u('d', 'gateway', 1)];
    expect(boundPools(usage, 2)).toEqual([
      u('a', 'container', 5),
      u('a', 'gateway', 1),
      u('c', 'container', 9),
      u(OTHER_POOLS, 'container', 3),
      u(OTHER_POOLS, 'gateway', 1),
    ]);
  });
});

describe('src/metrics published ports', () => {
  it('counts published ports per protocol at scrape, zero before any', async () => {
    const metrics = new Metrics(createLogger('silent'));
    let counts: Record<string, number> | undefined;
    metrics.setSources({ addressUsage: async () => [], programmedPeers: () => [], publishedPorts: () => counts ?? { tcp: 0, udp: 0 } });
    expect(await metrics.text()).toMatch(/\nvxnet_published_ports\{proto="tcp"\} 0\n/);
    counts = { tcp: 3, udp: 1 };
    const text = await metrics.text();
    expect(text).toMatch(/\nvxnet_published_ports\{proto="tcp"\} 3\n/);
    expect(text).toMatch(/\nvxnet_published_ports\{proto="udp"\} 1\n/);
  });
});

describe('src/metrics anti-spoofing drops', () => {
  it("copies the kernel's dropped-frames counter at scrape, 0 while there is no table", async () => {
    const metrics = new Metrics(createLogger('silent'));
    let dropped: number | null = null;
    metrics.setSources({ addressUsage: async () => [], programmedPeers: () => [], antispoofDropped: async () => dropped });
    expect(await metrics.text()).toMatch(/\nvxnet_antispoof_dropped_frames_total 0\n/);
    dropped = 7;
    expect(await metrics.text()).toMatch(/\nvxnet_antispoof_dropped_frames_total 7\n/);
    dropped = 12;
    expect(await metrics.text()).toMatch(/\nvxnet_antispoof_dropped_frames_total 12\n/);
  });
});

describe('src/metrics redirect entries', () => {
  it("reports each block's ports and remote MACs at scrape, nothing while the option is off", async () => {
    const metrics = new Metrics(createLogger('silent'));
    let blocks: Array<{ lnet: string; ports: number; remote: number }> = [];
    metrics.setSources({ addressUsage: async () => [], programmedPeers: () => [], redirectEntries: () => blocks });
    expect(await metrics.text()).not.toMatch(/\nvxnet_redirect_entries\{/);
    blocks = [{ lnet: 'span', ports: 2, remote: 6700 }];
    const text = await metrics.text();
    expect(text).toMatch(/\nvxnet_redirect_entries\{network="span",kind="port"\} 2\n/);
    expect(text).toMatch(/\nvxnet_redirect_entries\{network="span",kind="remote"\} 6700\n/);
    blocks = [];
    expect(await metrics.text()).not.toMatch(/\nvxnet_redirect_entries\{/);
  });
});
