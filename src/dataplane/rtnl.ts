// One shared rtnetlink socket and the link helpers every dataplane file uses.
//
// Requests go through a queue, one at a time: the kernel refuses a second dump on a socket
// while one is running (EBUSY), and the `netlink` package groups multipart replies assuming
// a single dump in flight. Each request takes tens of microseconds, so this costs nothing.
//
// The package's own high-level methods throw `Error('Request rejected: EEXIST')`, with the
// errno only in the message text; vxnet reads the NLMSG_ERROR payload itself so errors are
// translated by errno code.
import { getSystemErrorName } from 'node:util';
import { createRtNetlink, FlagsGet, FlagsNew, MessageType, parseError, rt, ifla } from 'netlink';
import type { NetlinkMessage, NetlinkSocket } from 'netlink';
import { LinkNotFoundError, causeText, vxError } from '../errors';
import type { LinkInfo } from './types';
import {
  AF_INET6,
  IFF_UP,
  IFLA_ADDRESS,
  IFLA_IFNAME,
  IFLA_MASTER,
  IFLA_MTU,
  attr,
  nest,
  u8,
  bufferToMac,
  ifinfomsg,
  macToBuffer,
  str,
  u32,
} from './nlmsg';

export { FlagsNew };
export const RTM = rt.MessageType;

/** An NLMSG_ERROR from the kernel, with its errno (positive) and code ("EEXIST"). */
export class NetlinkError extends Error {
  readonly errno: number;
  readonly code: string;
  constructor(errno: number) {
    let code = `E${errno}`;
    try {
      code = getSystemErrorName(-errno);
    } catch {
      // unknown errno: keep the number
    }
    super(code);
    this.name = 'NetlinkError';
    this.errno = errno;
    this.code = code;
  }
}

export function isErrno(err: unknown, ...codes: string[]): boolean {
  return err instanceof NetlinkError && codes.includes(err.code);
}

/**
 * One netlink socket, opened on first use, its requests sent one at a time; an error reply is
 * thrown as NetlinkError, the rest returned unparsed.
 */
export class NetlinkChannel {
  private sock: NetlinkSocket | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly open: () => NetlinkSocket) {}

  request(type: number, body: Buffer, flags = 0): Promise<NetlinkMessage[]> {
    const run = this.queue.then(() => this.send(type, body, flags));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Closes the socket (tests need the process to exit); the next request opens a new one. */
  close(): void {
    this.sock?.close();
    this.sock = null;
  }

  private async send(type: number, body: Buffer, flags: number): Promise<NetlinkMessage[]> {
    this.sock ??= this.open();
    const [msgs] = await this.sock.request(type, body, { flags, checkError: false });
    const out: NetlinkMessage[] = [];
    for (const m of msgs) {
      if (m.type === MessageType.ERROR) {
        const { errno } = parseError(m.data, m.flags);
        if (errno !== 0) throw new NetlinkError(-errno);
        continue;
      }
      if (m.type !== MessageType.DONE && m.type !== MessageType.NOOP) out.push(m);
    }
    return out;
  }
}

const rtnl = new NetlinkChannel(() => createRtNetlink().socket);

/** Closes the shared socket (tests need the process to exit); the next request opens a new one. */
export function closeRtnl(): void {
  rtnl.close();
}

/** Sends one rtnetlink request (REQUEST|ACK are added) and resolves with the parsed replies. */
export async function request(type: number, body: Buffer, flags = 0): Promise<rt.Message[]> {
  return (await rtnl.request(type, body, flags)).map((m) => rt.parseMessage(m.type, m.data));
}

export function dump(type: number, body: Buffer): Promise<rt.Message[]> {
  return request(type, body, FlagsGet.DUMP);
}

/**
 * Translates a netlink failure at the boundary: a missing device becomes LinkNotFoundError,
 * anything else a VXNET_ERR_KERNEL naming the action and the object.
 */
export function kernelError(err: unknown, action: string, object: string, link?: string): Error {
  if (link !== undefined && isErrno(err, 'ENODEV', 'ENOENT')) return new LinkNotFoundError(link, err);
  return vxError('VXNET_ERR_KERNEL', `could not ${action} ${object}: ${causeText(err)}`, err);
}

export interface RawLink {
  info: LinkInfo;
  /** Parsed IFLA_LINKINFO (kind, data) when present. */
  linkinfo: ifla.Info | null;
  attrs: ifla.LinkAttrs;
}

function toRawLink(m: rt.LinkMessage): RawLink {
  const linkinfo = m.attrs.linkinfo ? ifla.parseInfo(m.attrs.linkinfo) : null;
  const info: LinkInfo = {
    name: m.attrs.ifname ?? '',
    index: m.data.index ?? 0,
    kind: linkinfo?.kind ?? null,
    mtu: m.attrs.mtu ?? 0,
    mac: bufferToMac(m.attrs.address),
    up: m.data.flags?.up === true,
    master: m.attrs.master ?? null,
  };
  return { info, linkinfo, attrs: m.attrs };
}

/** The link with its raw attributes, or null when no link has that name. */
export async function getRawLink(name: string): Promise<RawLink | null> {
  let msgs: rt.Message[];
  try {
    msgs = await request(RTM.GETLINK, Buffer.concat([ifinfomsg({}), attr(IFLA_IFNAME, str(name))]));
  } catch (err) {
    if (isErrno(err, 'ENODEV')) return null;
    throw kernelError(err, 'read', `link ${name}`);
  }
  const m = msgs.find((x): x is rt.LinkMessage => x.kind === 'link');
  return m ? toRawLink(m) : null;
}

export async function getLinkByName(name: string): Promise<LinkInfo | null> {
  return (await getRawLink(name))?.info ?? null;
}

/** Links in this netns whose name starts with `prefix` (LINK_PREFIX finds every vxnet link). */
export async function listLinks(prefix: string): Promise<LinkInfo[]> {
  let msgs: rt.Message[];
  try {
    msgs = await dump(RTM.GETLINK, ifinfomsg({}));
  } catch (err) {
    throw kernelError(err, 'list', 'links');
  }
  return msgs
    .filter((x): x is rt.LinkMessage => x.kind === 'link')
    .map((m) => toRawLink(m).info)
    .filter((l) => l.name.startsWith(prefix));
}

/** Fetches a link or throws LinkNotFoundError. */
export async function requireLink(name: string): Promise<LinkInfo> {
  const link = await getLinkByName(name);
  if (!link) throw new LinkNotFoundError(name);
  return link;
}

async function setLinkAttrs(link: LinkInfo, attrs: Buffer[], what: string, extra: { flags?: number; change?: number } = {}): Promise<void> {
  try {
    await request(RTM.NEWLINK, Buffer.concat([ifinfomsg({ index: link.index, ...extra }), ...attrs]));
  } catch (err) {
    throw kernelError(err, what, `link ${link.name}`, link.name);
  }
}

const IFLA_AF_SPEC = 26;
const IFLA_INET6_ADDR_GEN_MODE = 8;
const IN6_ADDR_GEN_MODE_NONE = 1;

/**
 * Brings a link up without an IPv6 link-local address. Every host's bridge of a network has the
 * same MAC (anycast gateway), so each would derive the same fe80:: address, fail duplicate
 * address detection against the others across the tunnel, and send router solicitations and MLD
 * reports through it all the time. vxnet's bridges, VXLAN devices and host-side veth ends need
 * no link-local address; the mode must be set before the first "up" to take effect.
 */
export async function setUp(link: LinkInfo): Promise<void> {
  if (link.up) return;
  const noLinkLocal = nest(IFLA_AF_SPEC, [nest(AF_INET6, [attr(IFLA_INET6_ADDR_GEN_MODE, u8(IN6_ADDR_GEN_MODE_NONE))])]);
  // A kernel without IPv6 refuses the attribute: then there is no link-local address to avoid.
  await setLinkAttrs(link, [noLinkLocal], 'disable IPv6 link-local on').catch((err: unknown) => {
    if (!isErrno((err as { cause?: unknown }).cause ?? err, 'EAFNOSUPPORT', 'EOPNOTSUPP')) throw err;
  });
  await setLinkAttrs(link, [], 'bring up', { flags: IFF_UP, change: IFF_UP });
}

export async function setMtu(link: LinkInfo, mtu: number): Promise<void> {
  if (link.mtu === mtu) return;
  await setLinkAttrs(link, [attr(IFLA_MTU, u32(mtu))], `set MTU ${mtu} on`);
}

export async function setMac(link: LinkInfo, mac: string): Promise<void> {
  if (link.mac === mac.toLowerCase()) return;
  await setLinkAttrs(link, [attr(IFLA_ADDRESS, macToBuffer(mac))], `set MAC ${mac} on`);
}

/** Attaches `link` to the bridge `master` (ifindex). */
export async function setMaster(link: LinkInfo, master: LinkInfo): Promise<void> {
  if (link.master === master.index) return;
  await setLinkAttrs(link, [attr(IFLA_MASTER, u32(master.index))], `attach to bridge ${master.name}`);
}

/** Deletes a link by name; resolves when it is already gone. */
export async function deleteLink(name: string): Promise<void> {
  try {
    await request(RTM.DELLINK, Buffer.concat([ifinfomsg({}), attr(IFLA_IFNAME, str(name))]));
  } catch (err) {
    if (isErrno(err, 'ENODEV', 'ENOENT')) return;
    throw kernelError(err, 'delete', `link ${name}`);
  }
}

/** RTM_NEWLINK with CREATE|EXCL: EEXIST is left to the caller. */
export async function createLink(body: Buffer[]): Promise<void> {
  await request(RTM.NEWLINK, Buffer.concat([ifinfomsg({}), ...body]), FlagsNew.CREATE | FlagsNew.EXCL);
}
