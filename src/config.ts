// One typed, validated Config from flags and VXNET_* environment variables (same names: the flag
// --etcd-endpoints is VXNET_ETCD_ENDPOINTS). A flag wins over the environment. Invalid settings
// stop the start with one line naming the setting and the value.
import * as os from 'node:os';
import { isIPv4 } from 'node:net';
import { vxError } from './errors';
import { parseCidr, cidrToString } from './ipam/cidr';

export type StoreKind = 'embedded' | 'etcd';
export type Scope = 'local' | 'global';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface DefaultPool {
  /** e.g. 10.128.0.0/9 */
  base: string;
  /** Prefix length of each network carved out of base, e.g. 24. */
  size: number;
}

export interface Config {
  socket: string;
  /** Group allowed on the socket besides root (name or numeric gid); null: root only. */
  socketGroup: string | null;
  /** What GetCapabilities tells dockerd: global hands networks to the swarm manager. */
  scope: Scope;
  dataDir: string;
  store: StoreKind;
  logLevel: LogLevel;
  /** MTU for networks that set none; null = derived at start (underlay.ts mtuLimits: − VXLAN_OVERHEAD only with a tunnel). */
  mtu: number | null;
  defaultPools: DefaultPool[];
  hostId: string;
  /** Lowest and highest VNI vxnet allocates (Docker's swarm overlay starts at 4096). */
  vniMin: number;
  vniMax: number;
  vxlanPort: number;
  etcdEndpoints: string[];
  etcdPrefix: string;
  etcdCa: string | null;
  etcdCert: string | null;
  etcdKey: string | null;
  vtepIp: string | null;
  vtepInterface: string | null;
  leaseTtl: number;
  /** Milliseconds an idle network's devices stay after its last endpoint on this host. */
  teardownDelayMs: number;
  /** Endpoints and addresses younger than this are left alone by reconcile (a `docker run` may be in progress). */
  reconcileGraceMs: number;
  /** A host without a lease this long is dead for good: its records are released. */
  deadHostGraceMs: number;
  dockerHost: string | null;
  /** Where Prometheus scrapes GET /metrics; null: no metrics endpoint. */
  metricsAddr: ListenAddr | null;
  /** Names across hosts (src/names): off in swarm (global scope), where swarm serves names. */
  names: boolean;
  /** The policy table's fast path (dataplane/policy-table.ts): conntrack skipped between unpoliced containers. */
  fastPath: boolean;
  /**
   * Whether frames between a local container and one on another host skip the bridge and the
   * host's firewall (src/redirect, dataplane/redirect-block.ts): `always` (`--fast-path
   * redirect`), `auto` (`--fast-path auto`: only while no rule of anyone else's would see them,
   * redirect/firewall-gate.ts), `never` (on, off).
   */
  redirect: 'always' | 'auto' | 'never';
  dnsUpstreams: string[];
  dnsPort: number;
}

export interface ListenAddr {
  /** IPv4 address, hostname, or IPv6 address without brackets. */
  host: string;
  port: number;
}

interface Setting {
  flag: string;
  env: string;
  help: string;
  default: string;
}

export const SETTINGS: Setting[] = [
  { flag: 'socket', env: 'VXNET_SOCKET', default: '/run/docker/plugins/vxnet.sock', help: 'Unix socket dockerd connects to' },
  { flag: 'socket-group', env: 'VXNET_SOCKET_GROUP', default: '', help: 'group (name or gid) that may also use the socket: mode 0660 instead of root-only 0600' },
  { flag: 'scope', env: 'VXNET_SCOPE', default: 'local', help: 'local, or global for swarm networks (needs --store etcd and the managed plugin)' },
  { flag: 'data-dir', env: 'VXNET_DATA_DIR', default: '/var/lib/vxnet', help: 'where the embedded store keeps its files' },
  { flag: 'store', env: 'VXNET_STORE', default: 'embedded', help: 'embedded (one host) or etcd (several hosts)' },
  { flag: 'log-level', env: 'VXNET_LOG_LEVEL', default: 'info', help: 'fatal, error, warn, info, debug, trace or silent' },
  { flag: 'mtu', env: 'VXNET_MTU', default: '', help: 'MTU of networks that set none (default: with a VTEP the underlay interface\'s MTU - 50, or 1450; on a single host without one the default-route interface\'s MTU, or 1500)' },
  { flag: 'default-pools', env: 'VXNET_DEFAULT_POOLS', default: '10.128.0.0/9:24', help: 'where networks without --subnet get one: BASE/LEN:SIZE[,…]' },
  { flag: 'host-id', env: 'VXNET_HOST_ID', default: '', help: 'this host\'s name in the store (default: hostname)' },
  { flag: 'vni-range', env: 'VXNET_VNI_RANGE', default: '256-4095', help: 'VNIs vxnet allocates from: MIN-MAX (swarm overlay uses 4096 and up)' },
  { flag: 'vxlan-port', env: 'VXNET_VXLAN_PORT', default: '4789', help: 'UDP port of the VXLAN tunnels' },
  { flag: 'etcd-endpoints', env: 'VXNET_ETCD_ENDPOINTS', default: 'http://127.0.0.1:2379', help: 'comma-separated etcd URLs (with --store etcd)' },
  { flag: 'etcd-prefix', env: 'VXNET_ETCD_PREFIX', default: '/vxnet/v1/', help: 'key prefix in etcd (several clusters can share one etcd)' },
  { flag: 'etcd-ca', env: 'VXNET_ETCD_CA', default: '', help: 'CA file for etcd TLS' },
  { flag: 'etcd-cert', env: 'VXNET_ETCD_CERT', default: '', help: 'client certificate file for etcd TLS' },
  { flag: 'etcd-key', env: 'VXNET_ETCD_KEY', default: '', help: 'client key file for etcd TLS' },
  { flag: 'vtep-ip', env: 'VXNET_VTEP_IP', default: '', help: 'this host\'s tunnel endpoint address' },
  { flag: 'vtep-interface', env: 'VXNET_VTEP_INTERFACE', default: '', help: 'take the VTEP address from this interface (default: the default route\'s)' },
  { flag: 'lease-ttl', env: 'VXNET_LEASE_TTL', default: '10', help: 'seconds before a silent host is considered gone' },
  { flag: 'teardown-delay', env: 'VXNET_TEARDOWN_DELAY', default: '5', help: 'seconds an idle network\'s bridge and VXLAN device stay after its last container here (0: at once)' },
  { flag: 'reconcile-grace', env: 'VXNET_RECONCILE_GRACE', default: '60', help: 'seconds: reconcile leaves endpoints and addresses younger than this alone' },
  { flag: 'names', env: 'VXNET_NAMES', default: 'auto', help: 'answer container names across hosts: auto (on unless --scope global), on, off' },
  { flag: 'dns-upstreams', env: 'VXNET_DNS_UPSTREAMS', default: '', help: 'comma-separated IPv4 resolvers to intercept besides dockerd\'s --dns / daemon.json dns / the host\'s resolv.conf' },
  { flag: 'dns-port', env: 'VXNET_DNS_PORT', default: '5354', help: 'port of the name service on the networks\' gateways (containers\' queries to 127.0.0.11 go there first); the ports after it, one per intercepted upstream resolver' },
  { flag: 'dead-host-grace', env: 'VXNET_DEAD_HOST_GRACE', default: '86400', help: 'seconds without a lease before a host\'s endpoints and addresses are released' },
  { flag: 'docker-host', env: 'VXNET_DOCKER_HOST', default: '', help: 'dockerd API socket (default: the local one)' },
  { flag: 'fast-path', env: 'VXNET_FAST_PATH', default: 'auto', help: 'skip conntrack for frames a bridge forwards between two containers without policy: on, off (rules of your own matching --ctstate then see them tracked again), redirect (on, and frames between a container and one on another host skip the bridge and the host firewall, DOCKER-USER included, as on Docker\'s overlay), auto (redirect while no rule of anyone else\'s in DOCKER-USER, FORWARD before it, or another nftables table sees those frames; on otherwise, switched as soon as those rules change)' },
  { flag: 'metrics-addr', env: 'VXNET_METRICS_ADDR', default: '', help: 'serve Prometheus metrics on HOST:PORT, e.g. 127.0.0.1:9477 (default: off)' },
];

export function helpText(): string {
  const lines = ['Usage: vxnet run [options]', '', 'Every option can also be set in the environment (shown on the right).', ''];
  for (const s of SETTINGS) {
    const def = s.default === '' ? '' : ` (default ${s.default})`;
    lines.push(`  --${s.flag.padEnd(16)} ${s.env.padEnd(22)} ${s.help}${def}`);
  }
  return lines.join('\n');
}

/** Parses argv (after the sub-command) and env into a Config, or throws VXNET_ERR_BAD_CONFIG. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): Config {
  const raw = new Map<string, string>();
  for (const s of SETTINGS) {
    const fromEnv = env[s.env];
    raw.set(s.flag, fromEnv !== undefined && fromEnv !== '' ? fromEnv : s.default);
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) throw bad(arg, 'unexpected argument');
    const eq = arg.indexOf('=');
    const flag = arg.slice(2, eq < 0 ? undefined : eq);
    if (!SETTINGS.some((s) => s.flag === flag)) throw bad(arg, 'unknown option');
    let value: string | undefined = eq < 0 ? argv[++i] : arg.slice(eq + 1);
    if (value === undefined) throw bad(arg, 'needs a value');
    raw.set(flag, value);
  }
  const get = (flag: string): string => raw.get(flag) ?? '';
  const [vniMin, vniMax] = parseRange(get('vni-range'), 'vni-range', 1, 16777215);
  const store = oneOf(get('store'), 'store', ['embedded', 'etcd'] as const);
  const scope = oneOf(get('scope'), 'scope', ['local', 'global'] as const);
  const fastPathMode = oneOf(get('fast-path'), 'fast-path', ['on', 'off', 'redirect', 'auto'] as const);
  // A swarm network lives on every node: the embedded store of one host cannot hold it.
  if (scope === 'global' && store !== 'etcd') throw bad(describe('scope'), '"global" needs --store/VXNET_STORE etcd');
  return {
    socket: absolutePath(get('socket'), 'socket'),
    socketGroup: get('socket-group') === '' ? null : groupName(get('socket-group')),
    scope,
    dataDir: absolutePath(get('data-dir'), 'data-dir'),
    store,
    logLevel: oneOf(get('log-level'), 'log-level', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const),
    mtu: get('mtu') === '' ? null : integer(get('mtu'), 'mtu', 576, 65535),
    defaultPools: parseDefaultPools(get('default-pools')),
    hostId: get('host-id') === '' ? os.hostname() : hostId(get('host-id')),
    vniMin,
    vniMax,
    vxlanPort: integer(get('vxlan-port'), 'vxlan-port', 1, 65535),
    etcdEndpoints: get('etcd-endpoints').split(',').map((e) => e.trim()).filter((e) => e !== ''),
    etcdPrefix: etcdPrefix(get('etcd-prefix')),
    etcdCa: orNull(get('etcd-ca')),
    etcdCert: orNull(get('etcd-cert')),
    etcdKey: orNull(get('etcd-key')),
    vtepIp: orNull(get('vtep-ip')),
    vtepInterface: orNull(get('vtep-interface')),
    leaseTtl: integer(get('lease-ttl'), 'lease-ttl', 2, 3600),
    teardownDelayMs: integer(get('teardown-delay'), 'teardown-delay', 0, 3600) * 1000,
    reconcileGraceMs: integer(get('reconcile-grace'), 'reconcile-grace', 0, 86400) * 1000,
    deadHostGraceMs: integer(get('dead-host-grace'), 'dead-host-grace', 1, 365 * 86400) * 1000,
    dockerHost: orNull(get('docker-host')),
    metricsAddr: get('metrics-addr') === '' ? null : listenAddr(get('metrics-addr'), 'metrics-addr'),
    names: namesOn(oneOf(get('names'), 'names', ['auto', 'on', 'off'] as const), scope),
    dnsUpstreams: ipv4List(get('dns-upstreams'), 'dns-upstreams'),
    dnsPort: integer(get('dns-port'), 'dns-port', 1024, 65000),
    fastPath: fastPathMode !== 'off',
    redirect: fastPathMode === 'redirect' ? 'always' : fastPathMode === 'auto' ? 'auto' : 'never',
  };
}

function namesOn(v: 'auto' | 'on' | 'off', scope: Scope): boolean {
  return v === 'on' || (v === 'auto' && scope === 'local');
}

function ipv4List(v: string, flag: string): string[] {
  const list = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const wrong = list.find((s) => !isIPv4(s));
  if (wrong !== undefined) throw bad(describe(flag), `${JSON.stringify(wrong)} is not an IPv4 address`);
  return list;
}

function bad(setting: string, why: string): Error {
  return vxError('VXNET_ERR_BAD_CONFIG', `invalid setting ${setting}: ${why}`);
}

function envName(flag: string): string {
  return SETTINGS.find((s) => s.flag === flag)?.env ?? flag;
}

function describe(flag: string): string {
  return `--${flag}/${envName(flag)}`;
}

/** A group name as useradd accepts it, or a numeric gid. */
function groupName(v: string): string {
  if (!/^([0-9]+|[a-z_][a-z0-9_-]{0,31})$/.test(v)) throw bad(describe('socket-group'), `"${v}" is not a group name or gid`);
  return v;
}

function orNull(v: string): string | null {
  return v === '' ? null : v;
}

function absolutePath(v: string, flag: string): string {
  if (!v.startsWith('/')) throw bad(describe(flag), `"${v}" is not an absolute path`);
  return v;
}

function oneOf<T extends string>(v: string, flag: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(v)) throw bad(describe(flag), `"${v}" is not one of ${allowed.join(', ')}`);
  return v as T;
}

function integer(v: string, flag: string, min: number, max: number): number {
  if (!/^\d+$/.test(v)) throw bad(describe(flag), `"${v}" is not a whole number`);
  const n = Number(v);
  if (n < min || n > max) throw bad(describe(flag), `${n} is outside ${min}..${max}`);
  return n;
}

function parseRange(v: string, flag: string, min: number, max: number): [number, number] {
  const m = /^(\d+)-(\d+)$/.exec(v);
  if (!m) throw bad(describe(flag), `"${v}" is not MIN-MAX`);
  const lo = integer(m[1], flag, min, max);
  const hi = integer(m[2], flag, min, max);
  if (lo > hi) throw bad(describe(flag), `"${v}": ${lo} is above ${hi}`);
  return [lo, hi];
}

/** HOST:PORT with an explicit host: listening on every interface is a choice to write out (0.0.0.0). */
function listenAddr(v: string, flag: string): ListenAddr {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d+)$/.exec(v);
  if (!m) throw bad(describe(flag), `"${v}" is not HOST:PORT (e.g. 127.0.0.1:9477, [::1]:9477)`);
  return { host: m[1] ?? m[2], port: integer(m[3], flag, 1, 65535) };
}

function hostId(v: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(v)) throw bad(describe('host-id'), `"${v}" must be 1-63 letters, digits, ".", "_" or "-"`);
  return v;
}

function etcdPrefix(v: string): string {
  if (!v.startsWith('/') || !v.endsWith('/')) throw bad(describe('etcd-prefix'), `"${v}" must start and end with "/"`);
  return v;
}

export function parseDefaultPools(v: string): DefaultPool[] {
  const pools: DefaultPool[] = [];
  for (const part of v.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
    const m = /^(.+\/\d+):(\d+)$/.exec(part);
    const c = m ? parseCidr(m[1]) : null;
    if (!m || !c) throw bad(describe('default-pools'), `"${part}" is not BASE/LEN:SIZE (e.g. 10.128.0.0/9:24)`);
    const sz = Number(m[2]);
    if (sz < c.prefix || sz > c.bits - 2) throw bad(describe('default-pools'), `"${part}": size /${sz} does not fit in /${c.prefix}`);
    pools.push({ base: cidrToString(c), size: sz });
  }
  if (pools.length === 0) throw bad(describe('default-pools'), 'no pool given');
  return pools;
}
