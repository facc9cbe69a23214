// Interface addresses (the anycast gateway on a bridge). Only global-scope addresses are
// managed: the kernel's own IPv6 link-local address is left alone.
import { FlagsNew, rt } from 'netlink';
import type { LinkInfo } from './types';
import { AF_INET, AF_INET6, AF_UNSPEC, attr, bufferToIp, ifaddrmsg, parseCidr } from './nlmsg';
import type { ParsedCidr } from './nlmsg';
import { RTM, dump, isErrno, kernelError, request } from './rtnl';

const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_BROADCAST = 4;
/** No duplicate address detection: the gateway address is the same on every host (anycast), and DAD across the VXLAN would mark it dadfailed. */
const IFA_F_NODAD = 0x02;
const RT_SCOPE_UNIVERSE = 0;

export interface AddrInfo {
  /** Canonical CIDR, e.g. "10.1.0.1/24" or "fd00::1/64". */
  cidr: string;
  family: 4 | 6;
}

function canonical(cidr: string): string {
  const p = parseCidr(cidr);
  return `${p.ip}/${p.prefixlen}`;
}

/** Global-scope IPv4 and IPv6 addresses of `link`. */
export async function listAddrs(link: LinkInfo): Promise<AddrInfo[]> {
  let msgs: rt.Message[];
  try {
    msgs = await dump(RTM.GETADDR, ifaddrmsg({ family: AF_UNSPEC, prefixlen: 0, flags: 0, scope: 0, index: 0 }));
  } catch (err) {
    throw kernelError(err, 'list', `addresses of ${link.name}`, link.name);
  }
  const out: AddrInfo[] = [];
  for (const m of msgs) {
    if (m.kind !== 'address' || m.data.index !== link.index || m.data.scope !== RT_SCOPE_UNIVERSE) continue;
    // For IPv4, IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on p2p links).
    const ip = bufferToIp(m.data.family === AF_INET ? (m.attrs.local ?? m.attrs.address) : m.attrs.address);
    if (!ip) continue;
    out.push({ cidr: `${ip}/${m.data.prefixlen}`, family: m.data.family === AF_INET ? 4 : 6 });
  }
  return out;
}

function addrBody(link: LinkInfo, p: ParsedCidr, forAdd: boolean): Buffer {
  const parts = [
    ifaddrmsg({ family: p.family, prefixlen: p.prefixlen, flags: p.family === AF_INET6 ? IFA_F_NODAD : 0, scope: RT_SCOPE_UNIVERSE, index: link.index }),
    attr(IFA_LOCAL, p.bytes),
    attr(IFA_ADDRESS, p.bytes),
  ];
  if (forAdd && p.family === AF_INET && p.prefixlen <= 30) {
    const mask = p.prefixlen === 0 ? 0 : (~0 << (32 - p.prefixlen)) >>> 0;
    const bcast = Buffer.alloc(4);
    bcast.writeUInt32BE((p.bytes.readUInt32BE(0) | ~mask) >>> 0, 0);
    parts.push(attr(IFA_BROADCAST, bcast));
  }
  return Buffer.concat(parts);
}

export async function addAddr(link: LinkInfo, cidr: string): Promise<void> {
  const p = parseCidr(cidr);
  try {
    await request(RTM.NEWADDR, addrBody(link, p, true), FlagsNew.CREATE | FlagsNew.EXCL);
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return;
    throw kernelError(err, `add address ${cidr} to`, `link ${link.name}`, link.name);
  }
}

export async function delAddr(link: LinkInfo, cidr: string): Promise<void> {
  const p = parseCidr(cidr);
  try {
    await request(RTM.DELADDR, addrBody(link, p, false));
  } catch (err) {
    if (isErrno(err, 'EADDRNOTAVAIL')) return;
    throw kernelError(err, `remove address ${cidr} from`, `link ${link.name}`, link.name);
  }
}

/** Makes the global addresses of `link` exactly `cidrs`: extras are removed first, since IPv6 refuses the same address with another prefix. */
export async function ensureAddrs(link: LinkInfo, cidrs: string[]): Promise<void> {
  const want = new Set(cidrs.map(canonical));
  const have = await listAddrs(link);
  for (const a of have) {
    if (!want.has(a.cidr)) await delAddr(link, a.cidr);
  }
  const kept = new Set(have.map((a) => a.cidr));
  for (const cidr of want) {
    if (!kept.has(cidr)) await addAddr(link, cidr);
  }
}
