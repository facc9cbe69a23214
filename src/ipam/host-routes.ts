// This host's IPv4 routes as subnets, the default route aside: what an automatically chosen
// subnet must not shadow (the IPAM), and what the default pools should not overlap (doctor).
import { readRoutes4, Route4 } from '../dataplane/routes';
import type { Cidr } from './cidr';

export function routeCidr(r: Route4): Cidr {
  return { family: 4, base: BigInt(r.dest), prefix: r.prefix, bits: 32 };
}

export function hostRouteCidrs(routes: Route4[] = readRoutes4()): Cidr[] {
  return routes.filter((r) => r.prefix > 0).map(routeCidr);
}
