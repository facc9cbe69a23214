// What a RequestPool asks for, read once: a named subnet, or "any free subnet" from the default
// pools, optionally of a given size. The size comes from `--ipam-opt vxnet.subnet-size=N`
// (IPAM options reach RequestPool; `-o` driver options do not) or from `--subnet 0.0.0.0/N`,
// the form Docker 29 users write for "any /N" (dockerd passes it on as Pool "0.0.0.0/N").
// Pure: no store, no kernel.
import { vxError } from '../errors';
import type { DefaultPool } from '../config';
import { Cidr, parseCidr, isCanonicalCidr } from './cidr';

export const OPT_SUBNET_SIZE = 'vxnet.subnet-size';
const KNOWN_IPAM_OPTIONS = [OPT_SUBNET_SIZE];

export type PoolAsk = { kind: 'subnet'; pool: Cidr } | { kind: 'auto'; size: number | null };

export interface PoolAskInput {
  pool: string;
  subPool: string;
  options: Record<string, string>;
  v6: boolean;
}

/** Prefix lengths one default pool can give: from its own length to /30 (room for a gateway and a container). */
export function sizesOf(dp: DefaultPool): { min: number; max: number } | null {
  const base = parseCidr(dp.base);
  return base ? { min: base.prefix, max: base.bits - 2 } : null;
}

export function parsePoolAsk(req: PoolAskInput, defaultPools: DefaultPool[]): PoolAsk {
  for (const k of Object.keys(req.options)) {
    if (k.startsWith('vxnet.') && !KNOWN_IPAM_OPTIONS.includes(k)) throw bad(`unknown IPAM option ${k} (vxnet knows ${KNOWN_IPAM_OPTIONS.join(', ')})`);
  }
  const raw = req.options[OPT_SUBNET_SIZE];
  const optSize = raw === undefined ? null : wholeSize(raw);
  if (req.pool === '') {
    if (req.subPool !== '') throw bad(`ip-range ${req.subPool} given without a subnet`);
    return auto(optSize, `${OPT_SUBNET_SIZE}=${raw ?? ''}`, req.v6, defaultPools);
  }
  const pool = parseCidr(req.pool);
  if (!pool || !isCanonicalCidr(req.pool)) throw bad(`invalid subnet "${req.pool}": want a network address in CIDR form, e.g. 10.1.0.0/24`);
  if (pool.base === 0n && pool.prefix > 0) {
    // "any free /N": the address part says nothing, so an ip-range cannot sit inside it.
    if (req.subPool !== '') throw bad(`ip-range ${req.subPool} given with subnet ${req.pool}, which names no subnet (any free /${pool.prefix})`);
    if (optSize !== null && optSize !== pool.prefix) throw bad(`subnet ${req.pool} and ${OPT_SUBNET_SIZE}=${raw} ask for different sizes (/${pool.prefix} and /${optSize})`);
    return auto(pool.prefix, `subnet ${req.pool}`, req.v6, defaultPools);
  }
  if (optSize !== null && optSize !== pool.prefix) throw bad(`subnet ${req.pool} and ${OPT_SUBNET_SIZE}=${raw} ask for different sizes (/${pool.prefix} and /${optSize})`);
  return { kind: 'subnet', pool };
}

function auto(size: number | null, what: string, v6: boolean, defaultPools: DefaultPool[]): PoolAsk {
  if (v6) throw bad('vxnet does not choose IPv6 subnets: give --ipv6 networks a --subnet');
  if (size === null) return { kind: 'auto', size: null };
  const ranges = defaultPools.map(sizesOf).filter((r): r is { min: number; max: number } => r !== null);
  if (!ranges.some((r) => size >= r.min && size <= r.max)) {
    const allowed = ranges.map((r) => `/${r.min}../${r.max}`).join(', ');
    const pools = defaultPools.map((p) => `${p.base}:${p.size}`).join(',');
    throw bad(`${what}: /${size} does not fit the default pools (VXNET_DEFAULT_POOLS ${pools} allow ${allowed})`);
  }
  return { kind: 'auto', size };
}

function wholeSize(v: string): number {
  const m = /^\/?(\d{1,3})$/.exec(v);
  if (!m) throw bad(`IPAM option ${OPT_SUBNET_SIZE}="${v}" is not a prefix length (e.g. 28)`);
  return Number(m[1]);
}

function bad(msg: string): Error {
  return vxError('VXNET_ERR_BAD_REQUEST', msg);
}
