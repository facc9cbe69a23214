// The path between this host's VTEP and every other host's: one ping with Don't-Fragment of
// exactly the size a full inner frame becomes on the wire (inner MTU + 50), to each VTEP. A
// router or link on the way with a smaller MTU drops it (or answers "fragmentation needed"),
// which is the failure that otherwise shows only as stalled transfers between containers.
//
// Only addresses registered under hosts/ in vxnet's own store are probed: those are the cluster's
// hosts, which send VXLAN to this host anyway. Nothing else is ever pinged.
import * as net from 'node:net';
import { Keys, listJson } from '../store/json';
import type { HostRecord } from '../network/peers';
import { VXLAN_OVERHEAD } from '../underlay';
import { causeText } from '../errors';
import { Check, Verdict, fail, pass, warn } from './check';
import type { DoctorContext } from './context';
import { findPing, ping, PingTool, SMALL_PING } from './ping';
import { underlayFailure } from './underlay';

/** IPv4 header 20 + ICMP header 8: ping's -s counts the payload only. */
const ICMP_IP_HEADERS = 28;
/** Pings in flight at once: each is a short-lived process. */
const PARALLEL = 32;

export interface PeerVtep {
  host: string;
  vtep: string;
}

export type PathState = 'ok' | 'too-small' | 'unreachable';

export interface PathResult extends PeerVtep {
  state: PathState;
  ms: number | null;
}

/** Payload bytes of an echo whose IPv4 packet is as large as a full inner frame in VXLAN. */
export function dfPayload(innerMtu: number): number {
  return innerMtu + VXLAN_OVERHEAD - ICMP_IP_HEADERS;
}

/** Pure: the other hosts' VTEPs worth probing (valid IPv4, not this host, not this VTEP). */
export function peerVteps(records: Array<{ host: string; rec: HostRecord }>, self: string, selfVtep: string): PeerVtep[] {
  return records
    .filter(({ host, rec }) => host !== self && typeof rec.vtep === 'string' && net.isIPv4(rec.vtep) && rec.vtep !== selfVtep)
    .map(({ host, rec }) => ({ host, vtep: rec.vtep }))
    .sort((a, b) => a.host.localeCompare(b.host));
}

/** Pure: the line for what the probes found. */
export function pathVerdict(results: PathResult[], innerMtu: number, source: string, tool: PingTool): Verdict {
  const size = dfPayload(innerMtu) + ICMP_IP_HEADERS;
  const how = tool.kind === 'iputils' ? 'with DF set' : 'with DF as the kernel sets it (busybox ping)';
  const tooSmall = results.filter((r) => r.state === 'too-small');
  const unreachable = results.filter((r) => r.state === 'unreachable');
  const name = (r: PathResult): string => `${r.host} (${r.vtep})`;
  if (tooSmall.length > 0) {
    return fail(
      `${tooSmall.map(name).join(', ')} answer small pings but not ${size}-byte packets ${how}: the path carries less than inner MTU ${innerMtu} + ${VXLAN_OVERHEAD}` +
        (unreachable.length ? `; no answer at all from ${unreachable.map(name).join(', ')}` : ''),
      `lower VXNET_MTU to the path MTU - ${VXLAN_OVERHEAD} (networks keep the MTU they were created with: recreate them), or raise the MTU along the path to ${size}`,
    );
  }
  if (unreachable.length > 0) {
    return fail(
      `no answer to ping from ${unreachable.map(name).join(', ')} (sent from ${source})`,
      `make each VTEP reachable from ${source}: routes, and firewalls letting ICMP echo and the VXLAN UDP port through`,
    );
  }
  const times = results.map((r) => `${r.host} ${r.ms === null ? '?' : `${r.ms} ms`}`).join(', ');
  const verdict = pass(`${results.length} host(s) answer ${size}-byte packets ${how} from ${source}: ${times}`);
  if (tool.df) return verdict;
  return warn(`${verdict.detail}; but net.ipv4.ip_no_pmtu_disc=1 and busybox ping cannot set DF, so this proves reachability only`, 'apt-get install iputils-ping, and run vxnet doctor again');
}

async function probe(tool: PingTool, peer: PeerVtep, size: number, source: string): Promise<PathResult> {
  const big = await ping(tool, peer.vtep, size, source);
  if (big.ok) return { ...peer, state: 'ok', ms: big.ms };
  const small = await ping(tool, peer.vtep, SMALL_PING, source);
  return { ...peer, state: small.ok ? 'too-small' : 'unreachable', ms: small.ms };
}

async function inBatches<T, R>(items: T[], size: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
}

export const vtepPathCheck: Check<DoctorContext> = {
  name: 'vtep-path',
  // Listing the hosts (up to 2 s when etcd is slow), then two pings of 1 s per batch of hosts.
  timeoutMs: 8000,
  timeoutFix: 'too many hosts or a store that answers slowly: ping the VTEPs listed by vxnet status by hand',
  async run(ctx) {
    if (ctx.config.store === 'embedded') return pass('single host (embedded store): no other VTEPs');
    let source: string;
    let innerMtu: number;
    try {
      const u = await ctx.underlay();
      if (!u.vtep) return pass('no VTEP on this host: no tunnels');
      source = u.vtep.ip;
      innerMtu = u.innerMtu;
    } catch (err) {
      return underlayFailure(err);
    }
    let records: Array<{ host: string; rec: HostRecord }>;
    try {
      const keys = new Keys(ctx.config.etcdPrefix);
      const rows = await listJson<HostRecord>(await ctx.etcd(), keys.hosts());
      records = rows.map((r) => ({ host: r.key.slice(keys.hosts().length), rec: r.value }));
    } catch (err) {
      return warn(`not probed: the store does not answer (${causeText(err)})`, 'see the store check');
    }
    const peers = peerVteps(records, ctx.config.hostId, source);
    if (peers.length === 0) return pass('no other host is registered in the store');
    const tool = await findPing();
    if (!tool) return warn(`not probed: no ping command for ${peers.length} host(s)`, 'apt-get install iputils-ping');
    const results = await inBatches(peers, PARALLEL, (p) => probe(tool, p, dfPayload(innerMtu), source));
    return pathVerdict(results, innerMtu, source, tool);
  },
};
