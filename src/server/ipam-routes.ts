// IpamDriver.* (PROTOCOL.md §2). Errors go out as {"Error": …} (the app's error handler).
import type { FastifyInstance } from 'fastify';
import type { AppDeps } from './app';
import { poster } from './route';
import { ipamSchemas as s } from './schemas';

export function registerIpamRoutes(app: FastifyInstance, deps: AppDeps): void {
  const { ipam } = deps;
  const post = poster(app, 'IpamDriver');

  // vxnet keeps every allocation in its own store, so it never asks dockerd to replay them.
  post('GetCapabilities', null, async () => ({ RequiresMACAddress: false, RequiresRequestReplay: false }));
  post('GetDefaultAddressSpaces', null, async () => {
    const spaces = ipam.addressSpaces();
    return { LocalDefaultAddressSpace: spaces.local, GlobalDefaultAddressSpace: spaces.global };
  });
  post<{ AddressSpace: string; Pool?: string; SubPool?: string; Options?: Record<string, string> | null; V6?: boolean }>(
    'RequestPool',
    s.RequestPool,
    async (b) => {
      const r = await ipam.requestPool({ addressSpace: b.AddressSpace, pool: b.Pool ?? '', subPool: b.SubPool ?? '', options: b.Options ?? {}, v6: b.V6 === true });
      return { PoolID: r.poolId, Pool: r.pool, Data: r.data };
    },
  );
  post<{ PoolID: string }>('ReleasePool', s.ReleasePool, async (b) => {
    await ipam.releasePool(b.PoolID);
    return {};
  });
  post<{ PoolID: string; Address?: string; Options?: Record<string, string> | null }>('RequestAddress', s.RequestAddress, async (b) => {
    const r = await ipam.requestAddress({ poolId: b.PoolID, address: b.Address ?? '', options: b.Options ?? null });
    return { Address: r.address, Data: {} };
  });
  post<{ PoolID: string; Address: string }>('ReleaseAddress', s.ReleaseAddress, async (b) => {
    // A release of an address a live endpoint holds is a late one (a rolled-back `docker run`
    // retried through a restart, network/address-claims.ts): answered OK, the address kept.
    const holder = await ipam.releaseAddress(b.PoolID, b.Address);
    if (holder !== null) deps.log.warn({ pool: b.PoolID, address: b.Address, endpoint: holder }, 'ReleaseAddress of an address a live endpoint holds: kept');
    return {};
  });
}
