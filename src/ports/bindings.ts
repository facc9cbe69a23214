// Docker's port options (PROTOCOL.md §2, issue 9 "Facts from dockerd's source") as vxnet's own
// requests: pure parsing and validation, no kernel, no store.
//
// ProgramExternalConnectivity's Options carry `com.docker.network.portmap`, one entry per `-p`
// (and per exposed port with `-P`):
//   {"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":8080,"HostPortEnd":8080}
// Proto is a number (6 tcp, 17 udp, 132 sctp); HostPort 0 means "any free port" (`-p 80`, `-P`):
// dockerd allocates host ports only for its own bridge driver, so vxnet chooses. HostPortEnd
// above HostPort is a range (`-p 8000-8010:80`): the first free port of it. HostIP "" (or
// 0.0.0.0) is every address of the host.
import { vxError } from '../errors';

export const PORTMAP_OPTION = 'com.docker.network.portmap';

export type PortProto = 'tcp' | 'udp';

/** IP protocol numbers dockerd sends, and the names users typed. */
const PROTO_NUMBERS: Record<number, PortProto> = { 6: 'tcp', 17: 'udp' };
const SCTP = 132;
const PORT_MAX = 65535;
/** Every address of the host, as iptables and bind() take it. */
export const ANY_IPV4 = '0.0.0.0';
/** dockerd sends a few entries per container; this bounds what one call may ask for. */
export const MAX_REQUESTS = 1024;

/** One `-p` as asked: a host port range of one (fixed), 0-0 (any free), or A-B (first free). */
export interface PortRequest {
  proto: PortProto;
  /** Plain IPv4 address, ANY_IPV4 for all. */
  hostIp: string;
  /** 0: any free port of the kernel's ephemeral range. */
  hostPort: number;
  hostPortEnd: number;
  containerPort: number;
}

/** One published port as programmed: the host port chosen for a request. */
export interface PortBinding {
  proto: PortProto;
  hostIp: string;
  hostPort: number;
  containerPort: number;
}

/** The requests in ProgramExternalConnectivity's Options (none when the key is absent). */
export function portRequests(options: Record<string, unknown> | null | undefined): PortRequest[] {
  const raw = options?.[PORTMAP_OPTION];
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw bad(`${PORTMAP_OPTION} must be a list, not ${describe(raw)}`);
  if (raw.length > MAX_REQUESTS) throw bad(`${PORTMAP_OPTION} asks for ${raw.length} ports; at most ${MAX_REQUESTS} per container`);
  return raw.map((entry, i) => parseEntry(entry, i));
}

function parseEntry(entry: unknown, i: number): PortRequest {
  const at = `${PORTMAP_OPTION}[${i}]`;
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw bad(`${at} must be an object, not ${describe(entry)}`);
  const e = entry as Record<string, unknown>;
  const proto = parseProto(e.Proto, at);
  const containerPort = port(e.Port, `${at}.Port`, 1);
  const hostIp = parseHostIp(e.HostIP, `${at}.HostIP`);
  const hostPort = port(e.HostPort ?? 0, `${at}.HostPort`, 0);
  let hostPortEnd = port(e.HostPortEnd ?? 0, `${at}.HostPortEnd`, 0);
  if (hostPortEnd === 0) hostPortEnd = hostPort;
  if (hostPort === 0 && hostPortEnd !== 0) throw bad(`${at}: HostPortEnd ${hostPortEnd} given without a HostPort`);
  if (hostPortEnd < hostPort) throw bad(`${at}: host port range ${hostPort}-${hostPortEnd} ends before it starts`);
  return { proto, hostIp, hostPort, hostPortEnd, containerPort };
}

function parseProto(v: unknown, at: string): PortProto {
  if (v === SCTP) throw bad(`${at}.Proto: sctp is not supported by vxnet (publish tcp or udp ports)`);
  if (typeof v === 'number' && PROTO_NUMBERS[v]) return PROTO_NUMBERS[v];
  throw bad(`${at}.Proto: unknown protocol ${describe(v)} (want 6 for tcp or 17 for udp)`);
}

function port(v: unknown, at: string, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > PORT_MAX) {
    throw bad(`${at}: ${describe(v)} is not a port number (${min}-${PORT_MAX})`);
  }
  return v;
}

const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

function parseHostIp(v: unknown, at: string): string {
  if (v === undefined || v === null || v === '') return ANY_IPV4;
  if (typeof v !== 'string') throw bad(`${at}: ${describe(v)} is not an address`);
  if (IPV4_RE.test(v)) return v;
  if (v.includes(':')) throw bad(`${at}: IPv6 host address ${v} is not supported by vxnet (publish on an IPv4 address)`);
  throw bad(`${at}: ${JSON.stringify(v)} is not an IPv4 address`);
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (Array.isArray(v)) return 'a list';
  if (v === null) return 'null';
  if (typeof v === 'object') return 'an object';
  return String(v);
}

function bad(msg: string): Error {
  return vxError('VXNET_ERR_BAD_REQUEST', msg);
}

/** `0.0.0.0:8080/tcp`: how messages, status and logs name a host port. */
export function hostPortText(b: { proto: PortProto; hostIp: string; hostPort: number }): string {
  return `${b.hostIp}:${b.hostPort}/${b.proto}`;
}

/** What a request asks for, as a user typed it: `8000-8010/tcp`, `8080/udp`, `any/tcp`. */
export function requestText(r: PortRequest): string {
  const ports = r.hostPort === 0 ? 'a free port' : r.hostPort === r.hostPortEnd ? String(r.hostPort) : `${r.hostPort}-${r.hostPortEnd}`;
  return `${r.hostIp}:${ports}/${r.proto} (container port ${r.containerPort})`;
}

/** Two bindings collide when they take the same port of the same protocol on overlapping addresses. */
export function collides(a: { proto: PortProto; hostIp: string; hostPort: number }, b: { proto: PortProto; hostIp: string; hostPort: number }): boolean {
  return a.proto === b.proto && a.hostPort === b.hostPort && (a.hostIp === b.hostIp || a.hostIp === ANY_IPV4 || b.hostIp === ANY_IPV4);
}
