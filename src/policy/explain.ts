// `vxnet policy explain A B PORT[/PROTO]`: may container A open a new connection to container B
// on PORT, and which rule decides. Pure, over the same records the engine mirrors, and decided the
// way B's host decides (resolve.ts with B's host as "this host"), so any host can explain.
// Between two containers of one network only B's ingress side can refuse: egress rules never
// apply within a container's own network.
import { parseIp, parseCidr, containsIp } from '../ipam/cidr';
import { resolvePolicy, PolicyInput, EndpointPolicy, endpointRules } from './resolve';
import type { Proto } from './parse';

export interface Explanation {
  allowed: boolean;
  /** One sentence: what decides. */
  reason: string;
  /** The entry that allows, when one does. */
  rule: string | null;
  from: { name: string; ip: string };
  to: { name: string; ip: string; host: string; network: string };
}

/** Endpoints ("lnet/endpointId") that a name, alias, container ID (prefix) or IPv4 address designates. */
function find(input: PolicyInput, who: string): string[] {
  const w = who.toLowerCase();
  const out: string[] = [];
  for (const [key, ep] of input.endpoints) {
    const n = input.names.get(key);
    const ip = ep.ipv4?.split('/')[0];
    if (ip === who || n?.names.includes(w) || (w.length >= 12 && n?.containerId.startsWith(w))) out.push(key);
  }
  return out.sort();
}

export function explain(input: PolicyInput, from: string, to: string, port: number, proto: Proto): Explanation {
  const targets = find(input, to);
  if (targets.length === 0) throw new Error(`no container or address "${to}" on a vxnet network`);
  const key = targets[0];
  const [lnet] = key.split('/');
  const ep = input.endpoints.get(key)!;
  const toIp = ep.ipv4?.split('/')[0];
  if (!toIp) throw new Error(`"${to}" has no IPv4 address (policy is IPv4 only)`);
  // The source: a container on B's network (its address there), or an address.
  const sourceKey = find(input, from).find((k) => k.startsWith(`${lnet}/`));
  const fromIp = sourceKey ? input.endpoints.get(sourceKey)!.ipv4?.split('/')[0] : parseIp(from)?.family === 4 ? from : undefined;
  if (!fromIp) throw new Error(`"${from}" is neither a container on the network of "${to}" (${lnet}) nor an IPv4 address`);
  const view = resolvePolicy({ ...input, host: ep.host }).endpoints.find((e) => `${e.lnet}/${e.endpointId}` === key) as EndpointPolicy;
  const base = { from: { name: from, ip: fromIp }, to: { name: to, ip: toIp, host: ep.host, network: lnet } };
  const refuse = (reason: string): Explanation => ({ allowed: false, reason, rule: null, ...base });
  if (view.pending) return refuse(`${to}'s rules are not known yet (its labels were not read from dockerd): closed until they are`);
  if (view.error) return refuse(`${to} has a bad policy label, so it stays closed: ${view.error}`);
  const { rules } = endpointRules(ep, input.names.get(key));
  for (const [i, r] of rules.allow.entries()) {
    const portOk = r.ports === null || (r.ports.proto === proto && r.ports.from <= port && port <= r.ports.to);
    if (!portOk) continue;
    const src = parseIp(fromIp)!;
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
