// Text for the operator: `vxnet status` as aligned tables and `vxnet reconcile`'s plan. Pure
// functions of what the driver answered, so they are tested without a driver.
import type { StatusReport } from '../network/status';
import type { LastReconcile } from '../network/reconcile-history';
import type { NamesStatus } from '../names';
import type { EndpointPolicy, Explanation } from '../policy';
import type { RedirectStatus } from '../redirect/firewall-gate';
import { CHANGE_KINDS, ChangeKind, ReconcilePlan, changeCount } from '../network/reconcile';

/** Space between columns. */
const GAP = '  ';
const NONE = '-';

export const CHANGE_LABELS: Record<ChangeKind, string> = {
  staleNetworks: 'networks dockerd no longer has',
  staleEndpoints: 'endpoints whose container is gone',
  firewall: 'firewall chains put back in place',
  antispoof: 'anti-spoofing table and entries synced with the store',
  repairNetworks: 'networks whose devices are recreated',
  stalePorts: 'published ports of endpoints that are gone',
  repairPorts: 'published ports whose rules or reservations are recreated',
  orphanPortRules: 'port rules nothing owns',
  orphanLinks: 'links nothing owns',
  orphanRules: 'firewall entries nothing owns',
  orphanAddresses: 'addresses no endpoint uses',
  policy: 'policy set elements (vxnet-policy table)',
};

const KERNEL_ONLY = '(dockerd did not answer: only the kernel was checked)';

/** Rows padded to the widest cell of each column; no line ends in spaces. */
export function table(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]))).join(GAP).trimEnd());
}

/** `vxnet reconcile`: every kind of change with what it names (or "none"). */
export function formatPlan(plan: ReconcilePlan, dryRun: boolean): string {
  const lines = [`${dryRun ? 'would change' : 'changed'}:${plan.dockerdAnswered ? '' : ` ${KERNEL_ONLY}`}`];
  for (const kind of CHANGE_KINDS) lines.push(`  ${CHANGE_LABELS[kind]}: ${plan[kind].length === 0 ? 'none' : plan[kind].join(', ')}`);
  return `${lines.join('\n')}\n`;
}

/** `vxnet policy explain`: the verdict, then why. */
export function formatExplanation(e: Explanation, port: string): string {
  const over = e.family === 6 ? ' over IPv6' : '';
  return `${e.allowed ? 'allowed' : 'refused'}: ${e.from.name} (${e.from.ip}) -> ${e.to.name} (${e.to.ip} on ${e.to.host}, network ${e.to.network}) port ${port}${over}\n  ${e.reason}`;
}

/** One local container's policy state, as a word. */
function policyState(p: EndpointPolicy): string {
  if (p.pending) return 'pending (closed until its labels are read)';
  if (p.error) return `closed: ${p.error}`;
  if (p.isolatedNetwork || p.allow.length > 0) return p.isolatedNetwork ? 'isolated network: allow rules only' : 'allow rules only';
  return 'open';
}

/** The redirect fast path's state, as its section says it. */
function redirectLine(r: RedirectStatus): string {
  if (r.state === 'redirecting') return 'on: frames between hosts skip the bridge';
  if (r.state === 'unknown') return 'auto: not checked yet (frames take the bridge)';
  return `auto, suspended: ${r.rules.length} rule${r.rules.length === 1 ? '' : 's'} of someone else's see${r.rules.length === 1 ? 's' : ''} frames between hosts (${r.rules[0] ?? '?'}${r.rules.length > 1 ? ', …' : ''})`;
}

/**
 * `names` is absent from older drivers, null where the name service is off; `policy` absent from
 * older drivers; `redirect` absent from older drivers, null without the redirect fast path.
 */
export function formatStatus(s: StatusReport & { names?: NamesStatus | null; policy?: EndpointPolicy[]; redirect?: RedirectStatus | null }): string {
  const sections = [
    table([
      ['host', s.self.host],
      ['vtep', s.self.vtep ?? `${NONE} (single host)`],
      ['store', s.self.store],
      ['version', s.self.version],
    ]),
    section('HOSTS', ['HOST', 'VTEP', 'LEASE', 'DEAD SINCE', 'ENDPOINTS'], s.hosts.map((h) => [
      h.host,
      h.vtep ?? NONE,
      h.lease,
      h.deadSince ? `${h.deadSince}${h.releaseClaimedBy ? ` (released by ${h.releaseClaimedBy})` : ''}` : NONE,
      String(h.endpoints),
    ])),
    section('NETWORKS', ['NETWORK', 'VNI', 'SUBNETS', 'MTU', 'INTERNAL', 'ENDPOINTS PER HOST'], s.networks.map((n) => [
      n.network,
      String(n.vni),
      n.subnets.join(',') || NONE,
      String(n.mtu),
      n.internal ? 'yes' : 'no',
      Object.entries(n.endpoints).map(([h, c]) => `${h}=${c}`).join(' ') || NONE,
    ])),
    s.peers === null
      ? ['PEERS PROGRAMMED HERE', '(none: single host without a VTEP)']
      : section('PEERS PROGRAMMED HERE', ['NETWORK', 'VNI', 'FDB', 'NEIGH', 'REMOTE VTEPS'], s.peers.map((p) => [p.lnet, String(p.vni), String(p.fdb), String(p.neigh), String(p.vteps)])),
    s.ports === null || s.ports === undefined
      ? ['PUBLISHED PORTS', '(not served by this driver)']
      : section('PUBLISHED PORTS', ['ENDPOINT', 'NETWORK', 'PROTO', 'HOST', 'CONTAINER', 'RESERVED'], s.ports.map((p) => [
        p.endpoint,
        p.network,
        p.proto,
        `${p.hostIp}:${p.hostPort}`,
        `${p.containerIp}:${p.containerPort}`,
        p.reserved ? 'yes' : 'no (held by another process)',
      ])),
    ['LAST RECONCILE', ...formatLastReconcile(s.lastReconcile)],
  ];
  if (s.policy) {
    sections.splice(sections.length - 1, 0,
      section('POLICY OF LOCAL CONTAINERS', ['NETWORK', 'CONTAINER', 'IPV4', 'STATE', 'ALLOW (FROM)', 'EGRESS'], s.policy.map((p) => [
        p.lnet,
        p.names[0] ?? p.endpointId.slice(0, 12),
        p.ip ?? NONE,
        policyState(p),
        p.allow.map((a) => `${a.rule} (${a.from}: ${a.sources.join(' ') || 'nobody now'})`).join(', ') || NONE,
        p.egress.map((e) => `${e.rule} (${e.from})`).join(', ') || NONE,
      ])),
    );
  }
  if (s.redirect) sections.splice(sections.length - 1, 0, ['REDIRECT FAST PATH', redirectLine(s.redirect)]);
  if (s.names) {
    sections.splice(sections.length - 1, 0,
      section('NAMES SERVED HERE', ['NETWORK', 'NAMES', 'IPV4', 'IPV6', 'CONTAINER'], s.names.served.map((n) => [
        n.network, n.names.join(','), n.ipv4 ?? NONE, n.ipv6 ?? NONE, n.containerId.slice(0, 12),
      ])),
      section('DNS UPSTREAMS INTERCEPTED', ['UPSTREAM', 'LOCAL PORT'], s.names.upstreams.map((u) => [u.upstream, String(u.port)])),
    );
  }
  return `${sections.map((lines) => lines.join('\n')).join('\n\n')}\n`;
}

function section(title: string, header: string[], rows: string[][]): string[] {
  return rows.length === 0 ? [title, '(none)'] : [title, ...table([header, ...rows])];
}

function formatLastReconcile(r: LastReconcile | null): string[] {
  if (!r) return ['(none yet)'];
  const when = `${r.at} (${r.trigger})`;
  if (!r.plan) return [`${when}: failed: ${r.error ?? 'unknown error'}`];
  const n = changeCount(r.plan);
  const lines = [`${when}: ${n === 0 ? 'nothing to change' : `${n} change${n === 1 ? '' : 's'}`}${r.plan.dockerdAnswered ? '' : ` ${KERNEL_ONLY}`}`];
  for (const kind of CHANGE_KINDS) {
    if (r.plan[kind].length > 0) lines.push(`  ${CHANGE_LABELS[kind]}: ${r.plan[kind].join(', ')}`);
  }
  return lines;
}
