// VXNET_DEFAULT_POOLS against this host's routes. vxnet never picks a subnet that overlaps a
// route of the host choosing it, but every overlap shrinks the pools, and with etcd a subnet
// chosen on another host is not checked against this host's routes: containers here would
// lose the routed destination. Routes on vxnet's own bridges are its networks, not a clash.
import type { DefaultPool } from '../config';
import type { Route4 } from '../dataplane/routes';
import { readRoutes4 } from '../dataplane/routes';
import { Cidr, cidrToString, overlaps, parseCidr } from '../ipam/cidr';
import { routeCidr } from '../ipam/host-routes';
import { BRIDGE_PREFIX } from '../network/names';
import { Check, Verdict, pass, warn } from './check';
import type { DoctorContext } from './context';

export interface PoolOverlap {
  pool: string;
  route: string;
  iface: string;
}

/** Pure: which default pools overlap which routes (the default route and vxnet's bridges aside). */
export function poolRouteOverlaps(pools: DefaultPool[], routes: Route4[]): PoolOverlap[] {
  const out: PoolOverlap[] = [];
  for (const p of pools) {
    const base = parseCidr(p.base) as Cidr;
    for (const r of routes) {
      if (r.prefix === 0 || r.iface.startsWith(BRIDGE_PREFIX)) continue;
      const c = routeCidr(r);
      if (overlaps(base, c)) out.push({ pool: p.base, route: cidrToString(c), iface: r.iface });
    }
  }
  return out;
}

export function poolsVerdict(pools: DefaultPool[], routes: Route4[]): Verdict {
  const setting = pools.map((p) => `${p.base}:${p.size}`).join(',');
  const found = poolRouteOverlaps(pools, routes);
  if (found.length === 0) return pass(`default pools ${setting} overlap no route of this host`);
  const list = found.map((o) => `${o.pool} overlaps ${o.route} (dev ${o.iface})`).join('; ');
  return warn(
    `${list}: networks without --subnet skip those subnets here, but a subnet another host chooses may hide the route from containers on this host`,
    'set VXNET_DEFAULT_POOLS (on every host) to a range no host routes, e.g. a part of 10.0.0.0/8 or 172.16.0.0/12 your network does not use',
  );
}

export const poolsCheck: Check<DoctorContext> = {
  name: 'default-pools',
  async run(ctx) {
    return poolsVerdict(ctx.config.defaultPools, readRoutes4());
  },
};
