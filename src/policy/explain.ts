// `vxnet policy explain A B PORT[/PROTO]`: may container A open a new connection to container B
// on PORT, and which rule decides. Pure, over the same records the engine mirrors, and decided the
// way B's host decides (resolve.ts with B's host as "this host"), so any host can explain.
// Between two containers of one network only B's ingress side can refuse: egress rules never
// apply within a container's own network.
// IPv4 and IPv6 are decided apart in the kernel (their own sets, the same rules with each
// family's sources), so an explanation is for one family: the family of an address given for A or
// B, else the one asked for (`-6`), else IPv4 when B has an IPv4 address.
import { parseIp, parseCidr, containsIp, Family, bigIntToIp } from '../ipam/cidr';
import { resolvePolicy, PolicyInput, EndpointPolicy, endpointRules } from './resolve';
import type { EndpointRecord } from '../network/records';
import type { Proto } from './parse';

export interface Explanation {
  allowed: boolean;
  /** One sentence: what decides. */
  reason: string;
  /** The entry that allows, when one does. */
  rule: string | null;
  /** The address family explained (decided apart in the kernel). */
  family: Family;
  from: { name: string; ip: string };
  to: { name: string; ip: string; host: string; network: string };
}

/** An address in one spelling (IPv6 has several), or null when `text` is not an address. */
function canonical(text: string): { family: Family; text: string } | null {
  const ip = parseIp(text.replace(/^\[|\]$/g, ''));
  return ip ? { family: ip.family, text: bigIntToIp(ip.value, ip.family) } : null;
}

/** An endpoint's address of one family, without its prefix length. */
function addressOf(ep: EndpointRecord, family: Family): string | undefined {
  return (family === 4 ? ep.ipv4 : ep.ipv6)?.split('/')[0];
}

/** Endpoints ("lnet/endpointId") that a name, alias, container ID (prefix), IPv4 or IPv6 address designates. */
function find(input: PolicyInput, who: string): string[] {
  const w = who.toLowerCase();
  const asIp = canonical(who);
  const out: string[] = [];
  for (const [key, ep] of input.endpoints) {
    const n = input.names.get(key);
    const ipHit = asIp !== null && addressOf(ep, asIp.family) !== undefined && canonical(addressOf(ep, asIp.family) as string)?.text === asIp.text;
    if (ipHit || n?.names.includes(w) || (w.length >= 12 && n?.containerId.startsWith(w))) out.push(key);
  }
  return out.sort();
}

/** The family to explain: that of an address given, else the one asked for, else B's IPv4 if it has one. */
function familyOf(from: string, to: string, ep: EndpointRecord, asked: Family | undefined): Family {
  const given = [canonical(from)?.family, canonical(to)?.family].filter((f): f is Family => f !== undefined);
  if (given.length === 2 && given[0] !== given[1]) throw new Error(`"${from}" and "${to}" are addresses of different families`);
  if (given.length > 0) {
    if (asked !== undefined && asked !== given[0]) throw new Error(`IPv${asked} asked, but an IPv${given[0]} address was given`);
    return given[0];
  }
  return asked ?? (ep.ipv4 ? 4 : 6);
}

export function explain(input: PolicyInput, from: string, to: string, port: number, proto: Proto, asked?: Family): Explanation {
  const targets = find(input, to);
  if (targets.length === 0) throw new Error(`no container or address "${to}" on a vxnet network`);
  // B on several networks: the one it shares with A (with an address of the family asked), if any.
  const fromNets = new Set(find(input, from).map((k) => k.split('/')[0]));
  const fits = (k: string): boolean => asked === undefined || addressOf(input.endpoints.get(k)!, asked) !== undefined;
  const key = targets.find((k) => fromNets.has(k.split('/')[0]) && fits(k)) ?? targets.find((k) => fromNets.has(k.split('/')[0])) ?? targets[0];
  const [lnet] = key.split('/');
  const ep = input.endpoints.get(key)!;
  const family = familyOf(from, to, ep, asked);
  const toIp = addressOf(ep, family);
  if (!toIp) throw new Error(`"${to}" has no IPv${family} address on network ${lnet}`);
  // The source: a container on B's network (its address there), or an address.
  const sourceKey = find(input, from).find((k) => k.startsWith(`${lnet}/`));
  const fromIp = sourceKey ? addressOf(input.endpoints.get(sourceKey)!, family) : canonical(from)?.text;
  if (!fromIp) {
    throw new Error(sourceKey
      ? `"${from}" has no IPv${family} address on network ${lnet}`
      : `"${from}" is neither a container on the network of "${to}" (${lnet}) nor an IP address`);
  }
  const view = resolvePolicy({ ...input, host: ep.host }).endpoints.find((e) => `${e.lnet}/${e.endpointId}` === key) as EndpointPolicy;
  const base = { family, from: { name: from, ip: fromIp }, to: { name: to, ip: toIp, host: ep.host, network: lnet } };
  const refuse = (reason: string): Explanation => ({ allowed: false, reason, rule: null, ...base });
  if (view.pending) return refuse(`${to}'s rules are not known yet (its labels were not read from dockerd): closed until they are`);
  if (view.error) return refuse(`${to} has a bad policy label, so it stays closed: ${view.error}`);
  const { rules } = endpointRules(ep, input.names.get(key));
  const src = parseIp(fromIp)!;
  for (const [i, r] of rules.allow.entries()) {
    const portOk = r.ports === null || (r.ports.proto === proto && r.ports.from <= port && port <= r.ports.to);
    if (!portOk) continue;
    // Sources of the other family never match (the kernel checks each family in its own set).
    const hit = view.allow[i].sources.some((s) => {
      const c = parseCidr(s.includes('/') ? s : `${s}/${s.includes(':') ? 128 : 32}`);
      return c !== null && containsIp(c, src);
    });
    if (hit) return { allowed: true, reason: `${to}'s rule "${r.text}" (${view.allow[i].from}) allows it`, rule: r.text, ...base };
  }
  if (rules.allow.length > 0) return refuse(`none of ${to}'s allow rules (${rules.allow.map((r) => r.text).join(', ')}) matches ${fromIp} on ${port}/${proto}`);
  if (view.isolatedNetwork) return refuse(`network ${lnet} is isolated (enable_icc=false) and ${to} has no allow rule`);
  return { allowed: true, reason: `${to} has no allow rules and network ${lnet} is not isolated: default allow`, rule: null, ...base };
}
