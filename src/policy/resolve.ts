// Rules + records → the elements of the kernel's sets (dataplane/policy-table.ts). Pure.
//
// Every host decides only for its own endpoints, at the destination (ingress) and at the source
// (egress): records of other hosts are read only to learn the addresses of the sources a rule
// names (names/ records: names, aliases and labels, written by each container's own host).
//
// The sets use concatenated intervals, and the kernel refuses two elements that overlap ("File
// exists"): rules like `api:80-90, 10.0.0.0/8:85` do. So the boxes allowed for one endpoint
// (source range × protocol range × port range) are first cut into disjoint pieces (boxes()).
import type { NetworkRecord, EndpointRecord } from '../network/records';
import type { NameRecord } from '../names/records';
import { parseIp, parseCidr, bigIntToIp, lastAddress } from '../ipam/cidr';
import { emptyPolicySets } from '../dataplane/policy-table';
import { parseRules, OPT_ALLOW, OPT_EGRESS, PolicyRules, PortRange, AllowRule, EgressRule } from './parse';

/** A range of addresses (of one family), protocols and ports, as numbers. Inclusive bounds. */
export interface Box {
  src: [bigint, bigint];
  proto: [bigint, bigint];
  port: [bigint, bigint];
}

export interface PolicyElements {
  /** Local endpoints whose inbound connections are checked (IPv4 addresses). */
  policedIn: string[];
  /** Local endpoints whose outbound connections are checked. */
  policedOut: string[];
  /** "DST . SRC-RANGE . PROTO-RANGE . PORT-RANGE" */
  allowIn: string[];
  /** "SRC . DST-RANGE . PROTO-RANGE . PORT-RANGE" */
  allowOut: string[];
  /** The same for IPv6: rules with IPv6 sources (CIDRs, and peers' IPv6 addresses) and egress CIDRs. */
  policedIn6: string[];
  policedOut6: string[];
  allowIn6: string[];
  allowOut6: string[];
}

/** One local endpoint's effective policy: what `vxnet status` and explain show. */
export interface EndpointPolicy {
  lnet: string;
  endpointId: string;
  ip: string | null;
  /** Its IPv6 address, if it has one (drops are counted per address: metrics map them back). */
  ip6: string | null;
  container: string | null;
  names: string[];
  isolatedNetwork: boolean;
  /** Rules not known yet (fail closed): no new inbound connection from peers. */
  pending: boolean;
  /** A bad label: the container stays closed. */
  error: string | null;
  allow: Array<{ rule: string; from: 'option' | 'label'; sources: string[] }>;
  egress: Array<{ rule: string; from: 'option' | 'label' }>;
}

export interface PolicyInput {
  host: string;
  networks: Map<string, NetworkRecord>;
  /** Every endpoint record, keyed "lnet/endpointId". */
  endpoints: Map<string, EndpointRecord>;
  /** Every names/ record, keyed "lnet/endpointId". */
  names: Map<string, NameRecord>;
  /** Local endpoints ("lnet/endpointId") whose rules are not known yet. */
  pending: Set<string>;
}

export interface PolicyPlan {
  elements: PolicyElements;
  endpoints: EndpointPolicy[];
}

const ANY_PROTO: [bigint, bigint] = [0n, 255n];
const ANY_PORT: [bigint, bigint] = [0n, 65535n];
const PROTO_NUMBER = { tcp: 6n, udp: 17n } as const;

/** Network isolation (com.docker.network.bridge.enable_icc=false): absent = icc on. */
export function isolated(net: Pick<NetworkRecord, 'icc'> | undefined): boolean {
  return net?.icc === false;
}

/** Rules of one endpoint from its driver options (in its record) and its container's labels. */
export function endpointRules(ep: EndpointRecord, name: NameRecord | undefined): { rules: PolicyRules; from: { allow: Array<'option' | 'label'>; egress: Array<'option' | 'label'> }; error: string | null } {
  const opt = parseRules({ allow: ep.allow, egress: ep.egress });
  let lab: PolicyRules = { allow: [], egress: [] };
  let error: string | null = null;
  if (name?.labels) {
    try {
      lab = parseRules({ allow: name.labels[OPT_ALLOW], egress: name.labels[OPT_EGRESS] }, 'label ');
    } catch (err) {
      error = (err as Error).message;
    }
  }
  return {
    rules: { allow: [...opt.allow, ...lab.allow], egress: [...opt.egress, ...lab.egress] },
    from: { allow: [...opt.allow.map(() => 'option' as const), ...lab.allow.map(() => 'label' as const)], egress: [...opt.egress.map(() => 'option' as const), ...lab.egress.map(() => 'label' as const)] },
    error,
  };
}

/** Addresses (IPv4 and IPv6) of the peers on `lnet` that an allow rule's source names, or its CIDR. */
export function sourceAddresses(rule: AllowRule, lnet: string, input: Pick<PolicyInput, 'names'>): string[] {
  const s = rule.source;
  if (s.kind === 'cidr') return [s.cidr];
  const out: string[] = [];
  for (const [key, rec] of input.names) {
    if (!key.startsWith(`${lnet}/`)) continue;
    const hit = s.kind === 'name' ? rec.names.includes(s.name) : rec.labels?.[s.key] === s.value;
    if (hit) for (const a of [rec.ipv4, rec.ipv6]) if (a) out.push(a);
  }
  return [...new Set(out)].sort();
}

/** An address or CIDR as text: its family (IPv6 text always has a colon). */
function familyOf(text: string): 4 | 6 {
  return text.includes(':') ? 6 : 4;
}

/** The sets one local endpoint puts elements in (elements of every endpoint are appended in order). */
type Parts = Array<[keyof PolicyElements, string]>;

/**
 * One local endpoint's part of the plan and what it was decided from. A decision that reads no
 * other endpoint's names (no allow rule naming sources by name or label) is reused while its
 * record, its names/ record, its network's record and its pending state are the same objects:
 * the records are replaced, never changed in place, when they change.
 */
interface Decided {
  ep: EndpointRecord;
  name: NameRecord | undefined;
  net: NetworkRecord | undefined;
  pending: boolean;
  view: EndpointPolicy;
  parts: Parts;
  /** An allow rule names sources by name or label: other names/ records feed it (never reused). */
  readsNames: boolean;
}

/**
 * Decisions kept between recomputes by the engine: with 3,300 endpoints on a host, deciding
 * each of them again for every new one took ~35 s of CPU per driver while they were created
 * (bench:memory, --cpu-prof).
 */
export type PolicyMemo = Map<string, Decided>;

/**
 * Plain code-unit order of "lnet/endpointId" keys: collation (localeCompare, Intl.Collator) of
 * every key at every recompute cost 6-14 s of CPU per driver in the same burst.
 */
function byKey([a]: [string, unknown], [b]: [string, unknown]): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function resolvePolicy(input: PolicyInput, memo?: PolicyMemo): PolicyPlan {
  const elements: PolicyElements = emptyPolicySets();
  const endpoints: EndpointPolicy[] = [];
  // Only this host's endpoints are decided here: filtered before the sort, which is the same
  // order for a fraction of the comparisons.
  const local = [...input.endpoints].filter(([, ep]) => ep.host === input.host).sort(byKey);
  let memoized = 0;
  for (const [key, ep] of local) {
    const name = input.names.get(key);
    const net = input.networks.get(key.slice(0, key.indexOf('/')));
    const pending = input.pending.has(key);
    let d = memo?.get(key);
    if (!d || d.ep !== ep || d.name !== name || d.net !== net || d.pending !== pending) {
      d = decide(key, ep, name, net, pending, input);
      if (d.readsNames) memo?.delete(key);
      else memo?.set(key, d);
    }
    if (memo && !d.readsNames) memoized++;
    endpoints.push(d.view);
    for (const [set, e] of d.parts) elements[set].push(e);
  }
  // Decisions of endpoints no longer here (more kept than this pass used).
  if (memo && memo.size > memoized) {
    const live = new Set(local.map(([key]) => key));
    for (const key of memo.keys()) if (!live.has(key)) memo.delete(key);
  }
  return { elements, endpoints };
}

function decide(key: string, ep: EndpointRecord, nameRec: NameRecord | undefined, net: NetworkRecord | undefined, pending: boolean, input: PolicyInput): Decided {
  const [lnet, endpointId] = key.split('/');
  const ip = ep.ipv4?.split('/')[0] ?? null;
  const ip6 = ep.ipv6?.split('/')[0] ?? null;
  const parts: Parts = [];
  let parsed: ReturnType<typeof endpointRules>;
  try {
    parsed = endpointRules(ep, nameRec);
  } catch (err) {
    // Options were checked at CreateEndpoint: only a record of another version gets here.
    parsed = { rules: { allow: [], egress: [] }, from: { allow: [], egress: [] }, error: (err as Error).message };
  }
  const view: EndpointPolicy = {
    lnet,
    endpointId,
    ip,
    ip6,
    container: nameRec?.containerId ?? null,
    names: nameRec?.names ?? [],
    isolatedNetwork: isolated(net),
    pending,
    error: parsed.error,
    allow: parsed.rules.allow.map((r, i) => ({ rule: r.text, from: parsed.from.allow[i], sources: sourceAddresses(r, lnet, input) })),
    egress: parsed.rules.egress.map((r, i) => ({ rule: r.text, from: parsed.from.egress[i] })),
  };
  const closed = pending || parsed.error !== null;
  // Each family is decided on its own: the same rules, with that family's sources and CIDRs.
  const families = [
    { ip, family: 4 as const, subnet: net?.ipv4?.subnet, sets: { policedIn: 'policedIn', allowIn: 'allowIn', policedOut: 'policedOut', allowOut: 'allowOut' } as const },
    { ip: ip6, family: 6 as const, subnet: net?.ipv6?.subnet, sets: { policedIn: 'policedIn6', allowIn: 'allowIn6', policedOut: 'policedOut6', allowOut: 'allowOut6' } as const },
  ];
  for (const { ip: addr, family, subnet, sets } of families) {
    if (!addr) continue;
    if (closed || view.isolatedNetwork || view.allow.length > 0) {
      parts.push([sets.policedIn, addr]);
      if (!closed) {
        const bs = parsed.rules.allow.flatMap((r, i) => view.allow[i].sources.filter((src) => familyOf(src) === family).map((src) => box(src, r.ports)));
        for (const b of disjoint(bs)) parts.push([sets.allowIn, element(addr, b)]);
      }
    }
    if (parsed.error !== null || view.egress.length > 0) {
      parts.push([sets.policedOut, addr]);
      // Its own network is not "outside": peers stay reachable (their own ingress rules decide).
      const own = subnet ? [box(subnet, null)] : [];
      const rules: EgressRule[] = parsed.error !== null ? [] : parsed.rules.egress.filter((r) => r.family === family);
      for (const b of disjoint([...own, ...rules.map((r) => box(r.cidr, r.ports))])) parts.push([sets.allowOut, element(addr, b)]);
    }
  }
  const readsNames = parsed.rules.allow.some((r) => r.source.kind !== 'cidr');
  return { ep, name: nameRec, net, pending, view, parts, readsNames };
}

function box(cidrOrIp: string, ports: PortRange | null): Box {
  const proto = ports ? PROTO_NUMBER[ports.proto] : null;
  return {
    src: addressRange(cidrOrIp),
    proto: proto !== null ? [proto, proto] : ANY_PROTO,
    port: ports ? [BigInt(ports.from), BigInt(ports.to)] : ANY_PORT,
  };
}

function addressRange(text: string): [bigint, bigint] {
  if (!text.includes('/')) {
    const ip = parseIp(text);
    if (!ip) throw new Error(`not an IP address: ${text}`);
    return [ip.value, ip.value];
  }
  const c = parseCidr(text);
  if (!c) throw new Error(`not a CIDR: ${text}`);
  return [c.base, lastAddress(c)];
}

/**
 * The same space as the union of `boxes`, as boxes that do not overlap: cut along the source
 * axis at every box edge, then along the protocol axis, then merge the port ranges; neighbouring
 * source pieces with the same content are joined again. Rule sets are small (a few entries per
 * endpoint), so the cuts are cheap.
 */
export function disjoint(boxes: Box[]): Box[] {
  if (boxes.length === 0) return [];
  const srcCuts = cuts(boxes.map((b) => b.src));
  const out: Box[] = [];
  let prev: { lo: bigint; hi: bigint; content: string; pieces: Array<{ proto: [bigint, bigint]; port: [bigint, bigint] }> } | null = null;
  const flush = (): void => {
    if (prev) for (const p of prev.pieces) out.push({ src: [prev.lo, prev.hi], proto: p.proto, port: p.port });
    prev = null;
  };
  for (let i = 0; i + 1 < srcCuts.length; i++) {
    const lo = srcCuts[i];
    const hi = srcCuts[i + 1] - 1n;
    const covering = boxes.filter((b) => b.src[0] <= lo && b.src[1] >= hi);
    if (covering.length === 0) {
      flush();
      continue;
    }
    const pieces: Array<{ proto: [bigint, bigint]; port: [bigint, bigint] }> = [];
    const protoCuts = cuts(covering.map((b) => b.proto));
    for (let j = 0; j + 1 < protoCuts.length; j++) {
      const plo = protoCuts[j];
      const phi = protoCuts[j + 1] - 1n;
      const ports = merge(covering.filter((b) => b.proto[0] <= plo && b.proto[1] >= phi).map((b) => b.port));
      for (const port of ports) pieces.push({ proto: [plo, phi], port });
    }
    const content = pieces.map((p) => `${p.proto[0]}-${p.proto[1]}:${p.port[0]}-${p.port[1]}`).join(',');
    if (prev && prev.hi + 1n === lo && prev.content === content) {
      prev.hi = hi;
    } else {
      flush();
      prev = { lo, hi, content, pieces };
    }
  }
  flush();
  return out;
}

const byValue = (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0);

/** Sorted distinct edges: every range start, and every range end + 1. */
function cuts(ranges: Array<[bigint, bigint]>): bigint[] {
  return [...new Set(ranges.flatMap(([lo, hi]) => [lo, hi + 1n]))].sort(byValue);
}

/** Union of ranges as sorted, non-overlapping, non-touching ranges. */
function merge(ranges: Array<[bigint, bigint]>): Array<[bigint, bigint]> {
  const sorted = [...ranges].sort((a, b) => byValue(a[0], b[0]));
  const out: Array<[bigint, bigint]> = [];
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1n) last[1] = last[1] > hi ? last[1] : hi;
    else out.push([lo, hi]);
  }
  return out;
}

function range(lo: bigint, hi: bigint, fmt: (n: bigint) => string = String): string {
  return lo === hi ? fmt(lo) : `${fmt(lo)}-${fmt(hi)}`;
}

/** One set element, in nft's syntax; the source range in the family of `ip`. */
export function element(ip: string, b: Box): string {
  const family = familyOf(ip);
  return `${ip} . ${range(b.src[0], b.src[1], (n) => bigIntToIp(n, family))} . ${range(b.proto[0], b.proto[1])} . ${range(b.port[0], b.port[1])}`;
}
