// Anti-spoofing, the domain side: which (port, MAC, address) triples an endpoint's bridge port
// lets through (dataplane/antispoof.ts holds the table and says how it checks them).
//
// An endpoint may send from its own MAC with its own IPv4 address (IP and ARP), its own IPv6
// address, and its IPv6 link-local address (fe80::/64 + the modified EUI-64 of its MAC: what the
// kernel gives the container's interface; Neighbour Discovery and MLD need it). The link-local
// address is allowed for IPv4-only endpoints too: a container whose kernel has IPv6 on sends
// router solicitations and MLD reports from it, harmless, and dropping them would only make the
// dropped-frames counter useless as a sign of spoofing.
import { bigIntToIp, parseIp } from '../ipam/cidr';
import type { SpoofElement } from '../dataplane/antispoof';
import type { EndpointRecord } from './records';
import type { LocalState } from './network-driver';
import { vethNames } from './names';

/** Pure: fe80::/64 with the modified EUI-64 interface identifier of `mac` (RFC 4291 §2.5.1). */
export function linkLocalOf(mac: string): string {
  const b = mac.split(':').map((h) => parseInt(h, 16));
  const eui = [b[0] ^ 0x02, b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]];
  let value = 0xfe80n << 112n;
  for (const [i, byte] of eui.entries()) value |= BigInt(byte) << BigInt(8 * (7 - i));
  return bigIntToIp(value, 6);
}

/** Canonical text of an address (`ip` or `ip/len`), as nft prints it back. */
function canonical(address: string): string {
  const ip = parseIp(address.split('/')[0]);
  if (!ip) throw new Error(`not an IP address: ${address}`);
  return bigIntToIp(ip.value, ip.family);
}

/** Pure: every element the bridge port of one endpoint needs. */
export function portElements(endpointId: string, rec: Pick<EndpointRecord, 'mac' | 'ipv4' | 'ipv6'>): SpoofElement[] {
  const port = vethNames(endpointId).host;
  const mac = rec.mac.toLowerCase();
  const out: SpoofElement[] = [];
  if (rec.ipv4) {
    const ip = canonical(rec.ipv4);
    out.push({ set: 'v4', port, mac, ip }, { set: 'arp4', port, mac, ip });
  }
  const v6 = [linkLocalOf(mac), ...(rec.ipv6 ? [canonical(rec.ipv6)] : [])];
  for (const ip of v6) out.push({ set: 'v6', port, mac, ip }, { set: 'nd6', port, mac, ip });
  return out;
}

/** Pure: the elements of every endpoint of this host in the store. */
export function expectedElements(state: Pick<LocalState, 'endpoints'>): SpoofElement[] {
  return state.endpoints.flatMap((e) => portElements(e.endpointId, e.rec));
}

export function elementKey(e: SpoofElement): string {
  return `${e.set} ${e.port} ${e.mac} ${e.ip}`;
}

/** Pure: what to add and remove so the kernel holds exactly `want`. */
export function elementDiff(want: SpoofElement[], have: SpoofElement[]): { add: SpoofElement[]; remove: SpoofElement[] } {
  const haveKeys = new Set(have.map(elementKey));
  const wantKeys = new Set(want.map(elementKey));
  return { add: want.filter((e) => !haveKeys.has(elementKey(e))), remove: have.filter((e) => !wantKeys.has(elementKey(e))) };
}

/** What the anti-spoofing step of reconcile needs from the kernel (the Dataplane provides it). */
export interface SpoofTable {
  ensureAntispoof(opts: { dryRun: boolean }): Promise<string[]>;
  addSpoofElements(elements: SpoofElement[]): Promise<void>;
  removeSpoofElements(elements: SpoofElement[]): Promise<void>;
  listSpoofElements(): Promise<SpoofElement[]>;
}

/**
 * Reconcile's anti-spoofing step: the table in place, then its elements follow the store (those of
 * endpoints that are gone removed, missing ones added). Returns one line per change.
 * The kernel is listed before the store is read: a Join running meanwhile writes its endpoint's
 * record before its elements, so every element listed here that belongs to a live endpoint has a
 * record in the read that follows, and is never taken for a leftover.
 */
export async function syncAntispoof(
  table: SpoofTable,
  readEndpoints: () => Promise<LocalState['endpoints']>,
  dryRun: boolean,
): Promise<string[]> {
  const changes = await table.ensureAntispoof({ dryRun });
  const have = await table.listSpoofElements();
  const { add, remove } = elementDiff(expectedElements({ endpoints: await readEndpoints() }), have);
  changes.push(...add.map((e) => `+ ${elementKey(e)}`), ...remove.map((e) => `- ${elementKey(e)}`));
  if (!dryRun) {
    await table.removeSpoofElements(remove);
    await table.addSpoofElements(add);
  }
  return changes;
}
