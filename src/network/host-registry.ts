// hosts/<host>: this host's VTEP, attached to a store lease that this process keeps alive.
// When the process dies the lease expires after its TTL and every other host drops this
// host's peer entries (peers.ts); its addresses stay reserved (its containers may still run).
import type { Store } from '../store/types';
import type { Keys } from '../store/json';
import { vxError } from '../errors';
import type { HostRecord } from './peers';

export async function registerHost(store: Store, keys: Keys, host: string, rec: HostRecord, ttlSeconds: number): Promise<void> {
  if (!store.grantLease) throw vxError('VXNET_ERR_STORE', 'this store cannot hold host leases');
  const lease = await store.grantLease(ttlSeconds);
  const key = keys.host(host);
  const value = JSON.stringify(rec);
  // A record left by this host's previous process still carries that process's lease: it moves
  // to the new lease in one write. Deleting and creating it again would show every other host
  // this host leaving: they drop its peers' tunnel entries and traffic to its running
  // containers stops until the create (frames lost across a driver restart; peers.ts).
  for (let i = 0; i < 5; i++) {
    const cur = await store.get(key);
    const written = cur ? await store.compareAndSwap(key, value, cur.modRevision, { lease }) : await store.createIfAbsent(key, value, { lease });
    if (written) return;
  }
  throw vxError('VXNET_ERR_STORE_CONFLICT', `could not register host ${host}: ${key} keeps coming back`);
}
