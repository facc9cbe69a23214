// A name lookup from inside a container, as an application would do it (busybox nslookup
// through the container's resolv.conf, i.e. Docker's 127.0.0.11 and whatever sits before it).
import type { Host } from './hosts';

/** IPv4 addresses nslookup prints for `name` from `container`, in answer order ([] when not found). */
export async function nslookupA(h: Host, container: string, name: string): Promise<string[]> {
  const r = await h.docker(['exec', container, 'nslookup', '-type=a', name], { timeoutMs: 15_000 });
  if (r.code !== 0) return [];
  const after = r.stdout.split(/\nName:\s/).slice(1).join('\n');
  return [...after.matchAll(/Address(?: \d+)?:\s+(\d+\.\d+\.\d+\.\d+)/g)].map((m) => m[1]);
}
