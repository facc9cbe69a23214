// A name lookup from inside a container, as an application would do it (busybox nslookup
// through the container's resolv.conf, i.e. Docker's 127.0.0.11 and whatever sits before it).
import * as ipaddr from 'ipaddr.js';
import type { Host } from './hosts';

/** The addresses of one family nslookup prints for `name` from `container`, in answer order ([] when not found). */
async function nslookup(h: Host, container: string, name: string, family: 'ipv4' | 'ipv6'): Promise<string[]> {
  const r = await h.docker(['exec', container, 'nslookup', `-type=${family === 'ipv4' ? 'a' : 'aaaa'}`, name], { timeoutMs: 15_000 });
  if (r.code !== 0) return [];
  const after = r.stdout.split(/\nName:\s/).slice(1).join('\n');
  return [...after.matchAll(/Address(?: \d+)?:\s+(\S+)/g)].map((m) => m[1]).filter((a) => ipaddr.isValid(a) && ipaddr.parse(a).kind() === family);
}

/** IPv4 addresses nslookup prints for `name` from `container`, in answer order ([] when not found). */
export function nslookupA(h: Host, container: string, name: string): Promise<string[]> {
  return nslookup(h, container, name, 'ipv4');
}

/** IPv6 addresses (as nslookup prints them) for `name` from `container`. */
export function nslookupAAAA(h: Host, container: string, name: string): Promise<string[]> {
  return nslookup(h, container, name, 'ipv6');
}
