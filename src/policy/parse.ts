// The rule grammar of vxnet.allow (ingress) and vxnet.egress, as endpoint driver options or
// container labels. Pure: text in, typed rules out, or a VXNET_ERR_BAD_POLICY naming the entry.
//
//   vxnet.allow  = ENTRY ( [, ]+ ENTRY )*     ENTRY = SOURCE [ ":" PORTS [ "/" PROTO ] ]
//     SOURCE = container name or network alias (same network) | label:KEY=VALUE | CIDR | [IPv6 CIDR]
//   vxnet.egress = ENTRY ...                  ENTRY = CIDR [ ":" PORTS [ "/" PROTO ] ]
//   PORTS = N | A-B (1..65535), PROTO = tcp (default) | udp
// An entry without ports allows every port and protocol (ICMP too: "web may reach me").
import { vxError } from '../errors';
import { parseCidr, cidrToString } from '../ipam/cidr';

export const OPT_ALLOW = 'vxnet.allow';
export const OPT_EGRESS = 'vxnet.egress';

export type Proto = 'tcp' | 'udp';
export interface PortRange {
  from: number;
  to: number;
  proto: Proto;
}

export type Source =
  | { kind: 'name'; name: string }
  | { kind: 'label'; key: string; value: string }
  | { kind: 'cidr'; cidr: string; family: 4 | 6 };

export interface AllowRule {
  /** The entry as written: what status and explain show. */
  text: string;
  source: Source;
  /** null: every port and protocol. */
  ports: PortRange | null;
}

export interface EgressRule {
  text: string;
  cidr: string;
  family: 4 | 6;
  ports: PortRange | null;
}

export interface PolicyRules {
  allow: AllowRule[];
  egress: EgressRule[];
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;
const LABEL_PART_RE = /^[A-Za-z0-9_./-]+$/;

/** Entries of a rule list: separated by commas and/or white space; empty pieces are skipped. */
function entries(value: string): string[] {
  return value.split(/[\s,]+/).filter((e) => e !== '');
}

export function parseAllow(value: string, what = OPT_ALLOW): AllowRule[] {
  return entries(value).map((text) => {
    const { head, ports } = splitPorts(text, what);
    return { text, source: parseSource(head, text, what), ports };
  });
}

export function parseEgress(value: string, what = OPT_EGRESS): EgressRule[] {
  return entries(value).map((text) => {
    const { head, ports } = splitPorts(text, what);
    const c = parseCidrText(head, text, what);
    if (!c) throw bad(what, text, `"${head}" is not a CIDR (egress rules name addresses: a.b.c.d/len, [v6::/len])`);
    return { text, cidr: c.cidr, family: c.family, ports };
  });
}

/** Both options of one endpoint or container (absent = no rules of that kind). */
export function parseRules(opts: { allow?: string | null; egress?: string | null }, where = ''): PolicyRules {
  return {
    allow: opts.allow == null ? [] : parseAllow(opts.allow, `${where}${OPT_ALLOW}`),
    egress: opts.egress == null ? [] : parseEgress(opts.egress, `${where}${OPT_EGRESS}`),
  };
}

/** "[v6]:22", "10.0.0.0/8:22/udp", "label:k=v:80", "web": the source part and the port part. */
function splitPorts(text: string, what: string): { head: string; ports: PortRange | null } {
  let head: string;
  let rest: string | null;
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end < 0) throw bad(what, text, 'an IPv6 source opens "[" without a closing "]"');
    head = text.slice(1, end);
    const tail = text.slice(end + 1);
    if (tail !== '' && !tail.startsWith(':')) throw bad(what, text, `unexpected "${tail}" after "]"`);
    rest = tail === '' ? null : tail.slice(1);
    if (!head.includes(':')) throw bad(what, text, `"[${head}]": brackets are for IPv6 CIDRs only`);
  } else {
    // label:KEY=VALUE keeps its first colon.
    const from = text.startsWith('label:') ? 'label:'.length : 0;
    const colon = text.indexOf(':', from);
    head = colon < 0 ? text : text.slice(0, colon);
    rest = colon < 0 ? null : text.slice(colon + 1);
  }
  return { head, ports: rest === null ? null : parsePorts(rest, text, what) };
}

function parsePorts(spec: string, text: string, what: string): PortRange {
  const [range, proto = 'tcp', extra] = spec.split('/');
  if (extra !== undefined) throw bad(what, text, `"${spec}" has more than one "/"`);
  if (proto !== 'tcp' && proto !== 'udp') throw bad(what, text, `protocol "${proto}" is not tcp or udp`);
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(range);
  if (!m) throw bad(what, text, `ports "${range}" are not a port or a range A-B`);
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  for (const p of [from, to]) if (p < 1 || p > 65535) throw bad(what, text, `port ${p} is outside 1-65535`);
  if (from > to) throw bad(what, text, `port range ${from}-${to} runs backwards`);
  return { from, to, proto };
}

function parseSource(head: string, text: string, what: string): Source {
  if (head === '') throw bad(what, text, 'the source is empty');
  if (head.startsWith('label:')) {
    const kv = head.slice('label:'.length);
    const eq = kv.indexOf('=');
    const key = eq < 0 ? '' : kv.slice(0, eq);
    const value = eq < 0 ? '' : kv.slice(eq + 1);
    if (!LABEL_PART_RE.test(key) || !LABEL_PART_RE.test(value)) throw bad(what, text, `"${head}" is not label:KEY=VALUE`);
    return { kind: 'label', key, value };
  }
  const c = parseCidrText(head, text, what);
  if (c) return { kind: 'cidr', ...c };
  if (head.includes(':')) throw bad(what, text, `"${head}" is an IPv6 address: write it in brackets, [${head}]`);
  if (!NAME_RE.test(head)) throw bad(what, text, `"${head}" is not a container name, alias, label:KEY=VALUE or CIDR`);
  return { kind: 'name', name: head.toLowerCase() };
}

/** A CIDR or a bare address (as /32, /128); null if the text does not look like an address at all. */
function parseCidrText(head: string, text: string, what: string): { cidr: string; family: 4 | 6 } | null {
  const looksV4 = /^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(head);
  const looksV6 = head.includes(':');
  if (!looksV4 && !looksV6) return null;
  const withLen = head.includes('/') ? head : `${head}/${looksV6 ? 128 : 32}`;
  const c = parseCidr(withLen);
  if (!c) throw bad(what, text, `"${head}" is not a valid ${looksV6 ? 'IPv6' : 'IPv4'} address or CIDR`);
  return { cidr: cidrToString(c), family: c.family };
}

function bad(what: string, entry: string, why: string): Error {
  return vxError('VXNET_ERR_BAD_POLICY', `${what}: bad entry "${entry}": ${why}`);
}
