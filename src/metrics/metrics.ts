// vxnet's Prometheus metrics, in a registry of their own rather than prom-client's global one: a
// test process runs several daemons side by side, and each must count only its own calls.
//
// Events (plugin calls, store calls, reconcile passes) arrive through the callbacks below, which
// the daemon hands to the server, the store wrapper and the reconcile history; none of those
// imports this module. State (addresses in use, peer entries) is read from the domain when
// Prometheus scrapes, so it can never drift from the store or the kernel's programmed view.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from '../log';
import type { AddressUsage } from '../ipam/ipam';
import type { ProgrammedPeers } from '../network/peers';
import { CHANGE_KINDS, ReconcilePlan } from '../network/reconcile';
import type { StoreOp } from '../store/timed';

/** Seconds. Plugin and store calls take from well under a millisecond (embedded) to the 5 s etcd deadline. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * A scrape reports at most this many pools by name; the smaller rest are summed under
 * pool="other", so a cluster with thousands of networks cannot flood Prometheus with series.
 */
export const MAX_POOL_SERIES = 200;
export const OTHER_POOLS = 'other';

export interface MetricSources {
  addressUsage(): Promise<AddressUsage[]>;
  programmedPeers(): ProgrammedPeers[];
  /** Host ports published on this host, per protocol (absent: none are served). */
  publishedPorts?(): Record<string, number>;
  /** Frames the anti-spoofing table dropped on this host (null: no table). */
  antispoofDropped?(): Promise<number | null>;
  /** `--fast-path redirect`: the entries each network's block holds (none while the option is off). */
  redirectEntries?(): Array<{ lnet: string; ports: number; remote: number }>;
  /** Whether frames between hosts are redirected now (`--fast-path auto` suspends it while rules of someone else's see them). */
  redirectActive?(): boolean;
  /** Packets refused by network policy so far, per network and direction (absent: no policy). */
  policyDrops?(): Promise<Array<{ network: string; direction: 'in' | 'out'; packets: number }>>;
}

type ReconcileOutcome = 'ok' | 'kernel_only' | 'error';

export class Metrics {
  readonly registry = new Registry();
  private sources: MetricSources | null = null;
  private readonly calls: Counter<'method' | 'outcome'>;
  private readonly callSeconds: Histogram<'method' | 'outcome'>;
  private readonly errors: Counter<'method' | 'code'>;
  private readonly storeSeconds: Histogram<'op' | 'outcome'>;
  private readonly reconcileChanges: Counter<'kind'>;
  private readonly reconcileRuns: Counter<'outcome'>;
  private readonly reconcileLast: Gauge;
  private readonly addresses: Gauge<'pool' | 'kind'>;
  private readonly peerEntries: Gauge<'network' | 'kind'>;
  private readonly redirectEntries: Gauge<'network' | 'kind'>;
  private readonly redirectActive: Gauge;
  private readonly publishedPorts: Gauge<'proto'>;
  private readonly spoofDropped: Counter;
  private readonly policyDrops: Counter<'network' | 'direction'>;
  /** What policyDrops already counted, per "network direction" (the source gives totals). */
  private readonly policyDropsSeen = new Map<string, number>();

  constructor(private readonly log: Logger) {
    const registers = [this.registry];
    this.calls = new Counter({ name: 'vxnet_plugin_calls_total', help: 'Plugin calls answered, by method and outcome', labelNames: ['method', 'outcome'], registers });
    // Every latency uses one bucket layout, so plugin and store latencies can be compared per bucket.
    const latency = { buckets: LATENCY_BUCKETS, registers };
    this.callSeconds = new Histogram({ name: 'vxnet_plugin_call_duration_seconds', help: 'Time from request to response of plugin calls, by method and outcome', labelNames: ['method', 'outcome'], ...latency });
    this.errors = new Counter({ name: 'vxnet_plugin_errors_total', help: 'Failed plugin calls by method and error code (VXNET_ERR_*)', labelNames: ['method', 'code'], registers });
    this.storeSeconds = new Histogram({ name: 'vxnet_store_call_duration_seconds', help: 'Latency of store calls, by operation and outcome', labelNames: ['op', 'outcome'], ...latency });
    this.reconcileChanges = new Counter({ name: 'vxnet_reconcile_changes_total', help: 'Changes made by reconcile passes, by kind', labelNames: ['kind'], registers });
    this.reconcileRuns = new Counter({
      name: 'vxnet_reconcile_runs_total',
      help: 'Reconcile passes (not dry runs); kernel_only: dockerd did not answer',
      labelNames: ['outcome'],
      registers,
    });
    this.reconcileLast = new Gauge({ name: 'vxnet_reconcile_last_run_timestamp_seconds', help: 'When the last reconcile pass ended (Unix time)', registers });
    // Known label values start at zero, so rate() and alerts see a series before the first event.
    for (const kind of CHANGE_KINDS) this.reconcileChanges.inc({ kind }, 0);
    for (const outcome of ['ok', 'kernel_only', 'error'] satisfies ReconcileOutcome[]) this.reconcileRuns.inc({ outcome }, 0);

    this.addresses = new Gauge({
      name: 'vxnet_ipam_addresses_in_use',
      help: 'Addresses taken per pool and kind (container, gateway, aux), cluster-wide, read from the store at scrape',
      labelNames: ['pool', 'kind'],
      registers,
      collect: () => this.collectAddresses(),
    });
    this.peerEntries = new Gauge({
      name: 'vxnet_peer_entries',
      help: 'FDB and neighbour entries programmed for remote endpoints on this host, per network',
      labelNames: ['network', 'kind'],
      registers,
      collect: () => this.collectPeers(),
    });
    this.redirectEntries = new Gauge({
      name: 'vxnet_redirect_entries',
      help: '--fast-path redirect: local container ports and remote MACs in each network\'s tc block on this host',
      labelNames: ['network', 'kind'],
      registers,
      collect: () => {
        this.redirectEntries.reset();
        for (const r of this.sources?.redirectEntries?.() ?? []) {
          this.redirectEntries.set({ network: r.lnet, kind: 'port' }, r.ports);
          this.redirectEntries.set({ network: r.lnet, kind: 'remote' }, r.remote);
        }
      },
    });
    this.redirectActive = new Gauge({
      name: 'vxnet_redirect_active',
      help: '1 while frames between a local container and one on another host skip the bridge (--fast-path redirect, or auto with no rule of anyone else\'s in their path), else 0',
      registers,
      collect: () => this.redirectActive.set(this.sources?.redirectActive?.() === true ? 1 : 0),
    });
    this.publishedPorts = new Gauge({
      name: 'vxnet_published_ports',
      help: 'Host ports published (docker run -p/-P) for vxnet endpoints on this host, per protocol',
      labelNames: ['proto'],
      registers,
      collect: () => {
        for (const [proto, n] of Object.entries(this.sources?.publishedPorts?.() ?? { tcp: 0, udp: 0 })) this.publishedPorts.set({ proto }, n);
      },
    });
    // The kernel counts (nft counter "dropped"); the scrape copies its value.
    this.spoofDropped = new Counter({
      name: 'vxnet_antispoof_dropped_frames_total',
      help: "Frames dropped on this host because they did not carry their container's own MAC and IP (table bridge vxnet-antispoof)",
      registers,
      collect: () => this.collectSpoofDropped(),
    });
    this.policyDrops = new Counter({
      name: 'vxnet_policy_dropped_packets_total',
      help: 'Packets refused by network policy on this host, by network and direction (in: to a local container, out: from one)',
      labelNames: ['network', 'direction'],
      registers,
      collect: async () => {
        for (const d of (await this.sources?.policyDrops?.()) ?? []) {
          const key = `${d.network} ${d.direction}`;
          const delta = d.packets - (this.policyDropsSeen.get(key) ?? 0);
          if (delta > 0) this.policyDrops.inc({ network: d.network, direction: d.direction }, delta);
          else this.policyDrops.inc({ network: d.network, direction: d.direction }, 0);
          this.policyDropsSeen.set(key, d.packets);
        }
      },
    });
    collectDefaultMetrics({ register: this.registry });
  }

  /** The domain objects scrapes read; they are built after the store this module already times. */
  setSources(sources: MetricSources): void {
    this.sources = sources;
  }

  readonly observeCall = (method: string, seconds: number, errorCode: string | null): void => {
    const outcome = errorCode === null ? 'ok' : 'error';
    this.calls.inc({ method, outcome });
    this.callSeconds.observe({ method, outcome }, seconds);
    if (errorCode !== null) this.errors.inc({ method, code: errorCode });
  };

  readonly observeStore = (op: StoreOp, seconds: number, ok: boolean): void => {
    this.storeSeconds.observe({ op, outcome: ok ? 'ok' : 'error' }, seconds);
  };

  /** One real reconcile pass ended; null: it failed. */
  readonly observeReconcile = (plan: ReconcilePlan | null): void => {
    this.reconcileLast.setToCurrentTime();
    const outcome: ReconcileOutcome = plan === null ? 'error' : plan.dockerdAnswered ? 'ok' : 'kernel_only';
    this.reconcileRuns.inc({ outcome });
    for (const kind of CHANGE_KINDS) if (plan && plan[kind].length > 0) this.reconcileChanges.inc({ kind }, plan[kind].length);
  };

  /** Text exposition format, as served on GET /metrics. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /**
   * A store that does not answer must not fail the whole scrape (and hide every other metric):
   * the pool series are left out and the failure is logged.
   */
  private async collectAddresses(): Promise<void> {
    let usage: AddressUsage[] = [];
    try {
      if (this.sources) usage = boundPools(await this.sources.addressUsage(), MAX_POOL_SERIES);
    } catch (err) {
      this.log.warn({ err }, 'cannot count addresses for metrics');
    }
    // Reset only now: a scrape running alongside must not see the gauge empty while this one waits.
    this.addresses.reset();
    for (const u of usage) this.addresses.set({ pool: u.poolId, kind: u.kind }, u.count);
  }

  private async collectSpoofDropped(): Promise<void> {
    let dropped: number | null = null;
    try {
      dropped = (await this.sources?.antispoofDropped?.()) ?? null;
    } catch (err) {
      this.log.warn({ err }, 'cannot read the anti-spoofing counter for metrics');
    }
    this.spoofDropped.reset();
    if (dropped !== null) this.spoofDropped.inc(dropped);
  }

  private collectPeers(): void {
    this.peerEntries.reset();
    for (const p of this.sources?.programmedPeers() ?? []) {
      this.peerEntries.set({ network: p.lnet, kind: 'fdb' }, p.fdb);
      this.peerEntries.set({ network: p.lnet, kind: 'neigh' }, p.neigh);
    }
  }
}

/** Keeps the `max` pools with the most addresses by name and sums the rest under pool="other". */
export function boundPools(usage: AddressUsage[], max: number): AddressUsage[] {
  const totals = new Map<string, number>();
  for (const u of usage) totals.set(u.poolId, (totals.get(u.poolId) ?? 0) + u.count);
  if (totals.size <= max) return usage;
  const kept = new Set([...totals].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, max).map(([pool]) => pool));
  const other = new Map<string, AddressUsage>();
  const out: AddressUsage[] = [];
  for (const u of usage) {
    if (kept.has(u.poolId)) {
      out.push(u);
      continue;
    }
    const o = other.get(u.kind) ?? { poolId: OTHER_POOLS, kind: u.kind, count: 0 };
    o.count += u.count;
    other.set(u.kind, o);
  }
  return [...out, ...other.values()];
}
