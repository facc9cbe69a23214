// Shapes of the network-side records in the store (see Keys in store/json.ts for where they live).
import { decode } from '../store/json';
import type { KeyValue } from '../store/types';

export interface SubnetInfo {
  /** e.g. 10.1.0.0/24 */
  subnet: string;
  /** Plain IP, or null (internal networks still record it; it is just not served). */
  gateway: string | null;
  /** PoolID of the vxnet IPAM pool, or null when another IPAM driver manages the subnet. */
  poolId: string | null;
}

/** networks/<lnet>: one logical network, shared by every host that has it. */
export interface NetworkRecord {
  lnet: string;
  vni: number;
  ipv4: SubnetInfo | null;
  ipv6: SubnetInfo | null;
  mtu: number;
  internal: boolean;
  /**
   * Source NAT for egress (com.docker.network.bridge.enable_ip_masquerade). Absent in records
   * written by earlier versions, which means true.
   */
  masquerade?: boolean;
  /**
   * Traffic between the network's containers (com.docker.network.bridge.enable_icc). false: an
   * isolated network, where only policy rules let containers reach each other (src/policy).
   * Absent (earlier versions) means true.
   */
  icc?: boolean;
}

/** dnets/<host>/<NetworkID>: one dockerd's network, pointing at its logical network. */
export interface DockerNetworkRecord {
  lnet: string;
  poolIds: string[];
}

/** endpoints/<lnet>/<EndpointID>: one container interface, on one host. */
export interface EndpointRecord {
  networkId: string;
  host: string;
  vtep: string | null;
  mac: string;
  /** CIDR form (ip/len) as IPAM returned it, or null. */
  ipv4: string | null;
  ipv6: string | null;
  /** When CreateEndpoint recorded it (ms since the epoch). */
  at?: number;
  /** Policy rules given as endpoint driver options (vxnet.allow, vxnet.egress), validated at CreateEndpoint. */
  allow?: string;
  egress?: string;
}

/** Distinct values the intern pool keeps at most (it starts over when full: a cache, not a set). */
const INTERN_MAX = 4096;
const pool = new Map<string, string>();

function intern(s: string): string {
  const have = pool.get(s);
  if (have !== undefined) return have;
  if (pool.size >= INTERN_MAX) pool.clear();
  pool.set(s, s);
  return s;
}

/**
 * Whether an endpoint record's text can name `host` as its host: a record whose text lacks the
 * host's JSON string cannot, and is skipped without a JSON parse. Every host sees every endpoint
 * event of the cluster, and with thousands of them most are other hosts' (a true answer still
 * needs the parsed record's host checked).
 */
export function mayBeHosts(host: string): (raw: string) => boolean {
  const text = JSON.stringify(host);
  return (raw) => raw.includes(text);
}

/**
 * A copy of s that holds only its own characters. V8 makes a substring of 13 characters or more
 * (split, slice) a view into the whole string: an endpoint ID cut from its store key kept the key
 * (~100 bytes) alive for as long as the ID was held.
 */
export function ownCopy(s: string): string {
  return Buffer.from(s).toString();
}

/**
 * An endpoint record from the store with its repeated strings shared. Every host keeps every
 * endpoint of the cluster (peers, names, policy), and each JSON.parse made its own copy of the
 * Docker network ID (64 characters), the host and the VTEP: a few values repeated per record,
 * ~2.5 MB of strings per 10,000 records (heap snapshot, bench:memory).
 */
export function decodeEndpoint(kv: KeyValue): EndpointRecord {
  const ep = decode<EndpointRecord>(kv);
  if (typeof ep.networkId === 'string') ep.networkId = intern(ep.networkId);
  if (typeof ep.host === 'string') ep.host = intern(ep.host);
  if (typeof ep.vtep === 'string') ep.vtep = intern(ep.vtep);
  return ep;
}
