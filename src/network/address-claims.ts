// Which of this host's endpoints holds an address, and one lock per address so that question and
// the writes that change its answer (CreateEndpoint's record, ReleaseAddress's delete) never
// interleave.
//
// Why (test/e2e/crash-churn.test.ts, SIGKILLs during `docker run`/`rm`): dockerd retries a call
// to a plugin that is down for ~15 s and a rolled-back `docker run` sends its ReleaseAddress that
// way too. Two orders lost the address of a running container:
//   - reconcile released an address as an orphan (no endpoint, older than dockerd's retry window)
//     while its CreateEndpoint was still being retried, or it read the endpoints at the start of
//     its pass and the CreateEndpoint landed before the release;
//   - a late ReleaseAddress of a rolled-back container freed the address a new container had
//     been given after reconcile released it.
// So: a release of an address a live endpoint of this host holds (in a network using that pool)
// is refused; CreateEndpoint refuses an address another endpoint here holds, and takes its
// address back in the store if a release freed it in between (ipam.holdAddress).
import { KeyedLock } from './keyed-lock';
import type { Store } from '../store/types';
import { getJson, listJson, Keys } from '../store/json';
import type { RecordCache } from './record-cache';
import { parseIp, bigIntToIp } from '../ipam/cidr';
import type { DockerNetworkRecord, EndpointRecord } from './records';

export interface AddressClaimsDeps {
  store: Store;
  keys: Keys;
  host: string;
  /** This host's endpoints and Docker networks in memory; absent: read from the store. */
  records?: RecordCache;
}

/** An address in one spelling (IPv6 has many), for comparing a record's CIDR with a call's address. */
export function canonicalIp(addressOrCidr: string | null): string | null {
  const parsed = addressOrCidr ? parseIp(addressOrCidr.split('/')[0]) : null;
  return parsed ? bigIntToIp(parsed.value, parsed.family) : null;
}

export class AddressClaims {
  private readonly lock = new KeyedLock();

  constructor(private readonly deps: AddressClaimsDeps) {}

  /** Runs work holding the lock of every address given (nulls skipped), always in the same order. */
  async claiming<T>(ips: Array<string | null>, work: () => Promise<T>): Promise<T> {
    const keys = [...new Set(ips.filter((ip): ip is string => !!ip))].sort();
    const nest = (i: number): Promise<T> => (i === keys.length ? work() : this.lock.run(keys[i], () => nest(i + 1)));
    return nest(0);
  }

  /**
   * The endpoint of this host that holds ip (canonical, see canonicalIp) in a network using poolId (or, with poolId null, in
   * Docker network networkId), other than `except`; null if none.
   */
  async holder(ip: string, where: { poolId: string } | { networkId: string }, except?: string): Promise<string | null> {
    for (const ep of await this.localEndpoints(ip)) {
      if (ep.endpointId === except || (canonicalIp(ep.rec.ipv4) !== ip && canonicalIp(ep.rec.ipv6) !== ip)) continue;
      if ('networkId' in where) {
        if (ep.rec.networkId === where.networkId) return ep.endpointId;
      } else if ((await this.dockerNetwork(ep.rec.networkId))?.poolIds.includes(where.poolId)) {
        return ep.endpointId;
      }
    }
    return null;
  }

  /** Runs release under the address's lock unless a live endpoint holds it; the holder, or null when released. */
  async releaseUnlessHeld(poolId: string, ip: string, release: () => Promise<void>): Promise<string | null> {
    return this.claiming([ip], async () => {
      const holder = await this.holder(ip, { poolId });
      if (holder === null) await release();
      return holder;
    });
  }

  /** This host's endpoints; from the cache only those holding ip (the rest would be skipped). */
  private async localEndpoints(ip: string): Promise<Array<{ endpointId: string; rec: EndpointRecord }>> {
    const { store, keys, host, records } = this.deps;
    const cached = records?.localHolders(ip);
    const all = cached ?? (await listJson<EndpointRecord>(store, keys.endpoints())).map((kv) => ({ key: kv.key, rec: kv.value }));
    return all.filter((e) => e.rec.host === host).map((e) => ({ endpointId: e.key.slice(e.key.lastIndexOf('/') + 1), rec: e.rec }));
  }

  private async dockerNetwork(networkId: string): Promise<DockerNetworkRecord | null> {
    const { store, keys, host, records } = this.deps;
    return records?.dockerNetwork(networkId) ?? (await getJson<DockerNetworkRecord>(store, keys.dockerNetwork(host, networkId)))?.value ?? null;
  }
}
