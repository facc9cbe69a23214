// Typed JSON records over the string Store, and the key layout under the configured prefix.
import { vxError, causeText } from '../errors';
import type { KeyValue, Store } from './types';

export interface Versioned<T> {
  value: T;
  modRevision: number;
}

/** How many times a compare-and-swap loop re-reads and retries before reporting a conflict. */
export const CAS_RETRIES = 16;

export async function getJson<T>(store: Store, key: string): Promise<Versioned<T> | null> {
  const kv = await store.get(key);
  return kv ? { value: decode<T>(kv), modRevision: kv.modRevision } : null;
}

export async function listJson<T>(store: Store, prefix: string): Promise<Array<{ key: string } & Versioned<T>>> {
  const kvs = await store.list(prefix);
  return kvs.map((kv) => ({ key: kv.key, value: decode<T>(kv), modRevision: kv.modRevision }));
}

export function decode<T>(kv: KeyValue): T {
  try {
    return JSON.parse(kv.value) as T;
  } catch (err) {
    throw vxError('VXNET_ERR_STORE', `store key ${kv.key} holds invalid JSON: ${causeText(err)}`, err);
  }
}

/**
 * Read-modify-write of one small record with compare-and-swap. `change` returns the new value,
 * or null to delete the key, or undefined to leave it as it is. Retries on a lost race.
 */
export async function updateJson<T>(
  store: Store,
  key: string,
  change: (cur: T | null) => T | null | undefined,
): Promise<T | null> {
  for (let i = 0; i < CAS_RETRIES; i++) {
    const cur = await getJson<T>(store, key);
    const next = change(cur ? cur.value : null);
    if (next === undefined) return cur ? cur.value : null;
    if (next === null) {
      if (!cur) return null;
      if (await store.delete(key, cur.modRevision)) return null;
      continue;
    }
    if (await store.compareAndSwap(key, JSON.stringify(next), cur ? cur.modRevision : 0)) return next;
  }
  throw vxError('VXNET_ERR_STORE_CONFLICT', `could not update ${key}: still contended after ${CAS_RETRIES} tries`);
}

/** Key layout. Everything vxnet writes lives under one prefix so clusters can share an etcd. */
export class Keys {
  constructor(readonly prefix: string) {}
  /** Every pool of every address space: pools/<space>/<encoded subnet>. */
  allPools(): string {
    return `${this.prefix}pools/`;
  }
  pools(space: string): string {
    return `${this.allPools()}${space}/`;
  }
  pool(space: string, cidr: string): string {
    return `${this.pools(space)}${encodeCidr(cidr)}`;
  }
  /** Every address of every pool: addresses/<space>/<encoded subnet>/<ip>. */
  allAddresses(): string {
    return `${this.prefix}addresses/`;
  }
  addresses(space: string, cidr: string): string {
    return `${this.allAddresses()}${space}/${encodeCidr(cidr)}/`;
  }
  address(space: string, cidr: string, ip: string): string {
    return `${this.addresses(space, cidr)}${ip}`;
  }
  vnis(): string {
    return `${this.prefix}vnis/`;
  }
  vni(vni: number): string {
    return `${this.vnis()}${vni}`;
  }
  networks(): string {
    return `${this.prefix}networks/`;
  }
  network(lnet: string): string {
    return `${this.networks()}${lnet}`;
  }
  /** Docker networks (one per host and NetworkID) that point at a logical network. */
  dockerNetworks(): string {
    return `${this.prefix}dnets/`;
  }
  hostDockerNetworks(host: string): string {
    return `${this.dockerNetworks()}${host}/`;
  }
  dockerNetwork(host: string, networkId: string): string {
    return `${this.hostDockerNetworks(host)}${networkId}`;
  }
  endpoints(lnet?: string): string {
    return lnet === undefined ? `${this.prefix}endpoints/` : `${this.prefix}endpoints/${lnet}/`;
  }
  endpoint(lnet: string, endpointId: string): string {
    return `${this.endpoints(lnet)}${endpointId}`;
  }
  /** ports/<host>/<EndpointID>: one endpoint's published ports on that host. */
  ports(host: string): string {
    return `${this.prefix}ports/${host}/`;
  }
  port(host: string, endpointId: string): string {
    return `${this.ports(host)}${endpointId}`;
  }
  /** deadhosts/<host>: a host whose lease is gone, and since when (set by whoever noticed first). */
  deadHosts(): string {
    return `${this.prefix}deadhosts/`;
  }
  deadHost(host: string): string {
    return `${this.deadHosts()}${host}`;
  }
  hosts(): string {
    return `${this.prefix}hosts/`;
  }
  host(host: string): string {
    return `${this.hosts()}${host}`;
  }
}

/** "/" cannot appear inside one key segment. */
export function encodeCidr(cidr: string): string {
  return cidr.replace('/', '_');
}

export function decodeCidr(segment: string): string {
  return segment.replace('_', '/');
}
