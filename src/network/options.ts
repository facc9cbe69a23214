// The driver options of CreateNetwork: Docker puts every `-o k=v` under
// com.docker.network.generic as strings (PROTOCOL.md §2), plus a few top-level flags.
import { vxError } from '../errors';

export const GENERIC = 'com.docker.network.generic';
export const OPT_MTU = 'com.docker.network.driver.mtu';
export const OPT_INTERNAL = 'com.docker.network.internal';
/** Docker's bridge driver option, kept under its name: false = egress without source NAT (routed setups). */
export const OPT_MASQUERADE = 'com.docker.network.bridge.enable_ip_masquerade';
/** Docker's bridge driver option, kept under its name: false = an isolated network (src/policy). */
export const OPT_ICC = 'com.docker.network.bridge.enable_icc';
/** What Go's strconv.ParseBool accepts, as Docker parses this option. */
const BOOL_WORDS: Record<string, boolean> = { '1': true, t: true, T: true, TRUE: true, true: true, True: true, '0': false, f: false, F: false, FALSE: false, false: false, False: false };
export const OPT_NETWORK = 'vxnet.network';
export const OPT_VNI = 'vxnet.vni';
const KNOWN_VXNET_OPTIONS = [OPT_NETWORK, OPT_VNI];
/** The smallest MTU an IPv4 network may have (RFC 791); IPv6 needs 1280. */
export const MIN_MTU = 576;
export const MAX_VNI = 16777215;
const NETWORK_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export interface NetworkOptions {
  name: string | null;
  vni: number | null;
  mtu: number;
  internal: boolean;
  masquerade: boolean;
  icc: boolean;
}

/** The MTU a network gets without -o com.docker.network.driver.mtu, and the highest it may ask (underlay.ts). */
export interface MtuBounds {
  default: number;
  max: number;
}

export function resolveNetworkOptions(options: Record<string, unknown>, mtu: MtuBounds): NetworkOptions {
  const genericRaw = options[GENERIC] ?? {};
  if (typeof genericRaw !== 'object' || genericRaw === null || Array.isArray(genericRaw)) {
    throw bad(`${GENERIC} must be an object of strings`);
  }
  const generic = genericRaw as Record<string, unknown>;
  for (const [k, v] of Object.entries(generic)) {
    if (typeof v !== 'string') throw bad(`option ${k} must be a string, got ${JSON.stringify(v)}`);
    if (k.startsWith('vxnet.') && !KNOWN_VXNET_OPTIONS.includes(k)) {
      throw bad(`unknown option ${k} (vxnet knows ${KNOWN_VXNET_OPTIONS.join(', ')})`);
    }
  }
  const str = (k: string): string | undefined => generic[k] as string | undefined;
  const internal = options[OPT_INTERNAL];
  if (internal !== undefined && typeof internal !== 'boolean') throw bad(`${OPT_INTERNAL} must be true or false`);
  const name = str(OPT_NETWORK) ?? null;
  if (name !== null && !NETWORK_NAME_RE.test(name)) {
    throw bad(`option ${OPT_NETWORK}="${name}" must be 1-63 letters, digits, ".", "_" or "-"`);
  }
  const ipv6 = options['com.docker.network.enable_ipv6'] === true;
  return {
    name,
    vni: str(OPT_VNI) === undefined ? null : wholeNumber(OPT_VNI, str(OPT_VNI) as string, 1, MAX_VNI),
    mtu: str(OPT_MTU) === undefined ? mtu.default : wholeNumber(OPT_MTU, str(OPT_MTU) as string, ipv6 ? 1280 : MIN_MTU, mtu.max),
    internal: internal === true,
    masquerade: str(OPT_MASQUERADE) === undefined ? true : boolean(OPT_MASQUERADE, str(OPT_MASQUERADE) as string),
    icc: str(OPT_ICC) === undefined ? true : boolean(OPT_ICC, str(OPT_ICC) as string),
  };
}

function wholeNumber(opt: string, v: string, min: number, max: number): number {
  if (!/^\d+$/.test(v)) throw bad(`option ${opt}="${v}" is not a whole number`);
  const n = Number(v);
  if (n < min || n > max) throw bad(`option ${opt}=${n} is outside ${min}..${max}`);
  return n;
}

function boolean(opt: string, v: string): boolean {
  const b = BOOL_WORDS[v];
  if (b === undefined) throw bad(`option ${opt}="${v}" must be true or false`);
  return b;
}

function bad(msg: string): Error {
  return vxError('VXNET_ERR_BAD_REQUEST', msg);
}
