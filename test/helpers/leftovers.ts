// What a host's kernel and a shared etcd hold, read the way an operator would (nft listings, the
// etcd v3 JSON gateway): for tests that check nothing was left behind by containers that went.
import type { Host } from './hosts';
import { parseListing, PolicySets, POLICY_TABLE } from '../../src/dataplane/policy-table';
import { parseElements, ANTISPOOF_FAMILY, ANTISPOOF_TABLE } from '../../src/dataplane/antispoof';

/** The policy table's elements on a host, in resolve.ts's syntax. */
export async function policyElements(h: Host): Promise<PolicySets> {
  return parseListing(await h.execOk(['nft', '-nn', '-p', 'list', 'table', 'inet', POLICY_TABLE]));
}

/** The container ports (host-side veth names) that the anti-spoofing sets hold elements for. */
export async function antispoofPorts(h: Host): Promise<Set<string>> {
  return new Set(parseElements(await h.execOk(['nft', '-j', 'list', 'table', ANTISPOOF_FAMILY, ANTISPOOF_TABLE])).map((e) => e.port));
}

/** The key just after every key that starts with `prefix` (etcd's range_end for a prefix). */
function prefixEnd(prefix: string): string {
  const b = Buffer.from(prefix);
  b[b.length - 1]++;
  return b.toString('base64');
}

/**
 * Every key under `prefix` in the etcd at `endpoint`, through its JSON gateway (POST /v3/kv/range)
 * from a host that reaches it (no etcdctl on the machine; busybox wget is in every host).
 */
export async function etcdKeys(from: Host, endpoint: string, prefix: string): Promise<string[]> {
  const body = JSON.stringify({ key: Buffer.from(prefix).toString('base64'), range_end: prefixEnd(prefix), keys_only: true });
  const out = await from.execOk(['busybox', 'wget', '-q', '-O', '-', '--header', 'Content-Type: application/json', '--post-data', body, `${endpoint}/v3/kv/range`]);
  const doc = JSON.parse(out) as { kvs?: Array<{ key: string }> };
  return (doc.kvs ?? []).map((kv) => Buffer.from(kv.key, 'base64').toString());
}
