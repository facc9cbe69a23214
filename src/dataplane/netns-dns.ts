// Rules placed inside one container's network namespace so that its DNS queries reach vxnet
// before Docker's embedded resolver (dataplane half of names/container-redirect.ts).
//
// Why: Docker's resolver (127.0.0.11) answers a name held by a local container with the local
// addresses only and never forwards it, so an alias shared across hosts can only be answered
// whole by something that sees the query first. Docker itself sends the container's queries
// to its resolver with nat OUTPUT rules in the container's namespace (chain DOCKER_OUTPUT:
// 127.0.0.11:53 -> 127.0.0.11:<random port>, one for udp, one for tcp). vxnet adds, with the
// same iptables backend Docker used there (nft or legacy: the one holding DOCKER_OUTPUT; two
// backends' nat hooks at the same priority would run in no defined order):
//
//   nat OUTPUT 1,2:  -d 127.0.0.11 -p udp|tcp --dport 53 -j DNAT --to GW:PORT
//       the container's queries go to vxnet's resolver on the network's gateway address (the
//       anycast gateway is on this host's bridge), ahead of Docker's jump;
//   nat POSTROUTING: -s 127.0.0.0/8 -d GW -p udp|tcp --dport PORT -j SNAT --to CIP
//       a query to 127.0.0.11 left from 127.0.0.1; it must leave eth with the container's
//       address (vxnet then knows the network from the source, and the reply can come back);
//   nat PREROUTING:  -s GW -d CIP -p udp|tcp --dport PORT -j DNAT --to 127.0.0.11:DOCKERPORT
//       what vxnet does not answer it sends back to CIP:PORT and it lands on Docker's resolver
//       exactly where Docker's own rule would have sent it: Docker resolves and forwards as if
//       vxnet were not there (local records, --dns, search, its own upstream choice);
//   sysctl net.ipv4.conf.all.route_localnet=1
//       without it the kernel refuses to route 127.0.0.0/8 sources and destinations off
//       loopback (both NATs above need that, as kube-proxy's localhost NodePorts do);
//   filter INPUT:    ! -i lo -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
//       route_localnet would otherwise let a neighbour on the bridge reach services bound to
//       the container's loopback (CVE-2020-8558); only the DNAT above may get there.
//
// Everything is written with one `iptables-restore --noflush` (atomic), after one
// `iptables-save` that tells the backend, Docker's ports, and whether vxnet's rules are
// already in place and first (Docker re-inserting its jump at the top is undone). The rules
// die with the namespace; vxnet removes them on a clean stop (a stopped vxnet must not take
// the containers' resolution with it).
import { execFile } from 'node:child_process';
import { isIPv4 } from 'node:net';
import { vxError } from '../errors';

export const NETNS_DNS_COMMENT = 'vxnet-dns';
const DOCKER_RESOLVER = '127.0.0.11';
const COMMENT = `-m comment --comment ${NETNS_DNS_COMMENT}`;
const EXEC_TIMEOUT_MS = 10_000;

export type Backend = 'nft' | 'legacy';

export interface NetnsDnsSpec {
  /** The network's gateway on this host (vxnet's resolver listens there). */
  gateway: string;
  /** The container's address on that network. */
  containerIp: string;
  /** vxnet's resolver port on the gateway, and the port Docker's resolver is reached back on. */
  port: number;
}

export interface DockerResolverPorts {
  udp: number;
  tcp: number;
}

/** Docker's DNAT targets for 127.0.0.11:53 in an iptables-save text of the nat table, or null. */
export function dockerResolverPorts(natSave: string): DockerResolverPorts | null {
  const out: Partial<DockerResolverPorts> = {};
  for (const line of natSave.split('\n')) {
    if (!line.startsWith('-A DOCKER_OUTPUT ')) continue;
    const proto = / -p (udp|tcp) /.exec(line)?.[1] as 'udp' | 'tcp' | undefined;
    const port = / --to-destination 127\.0\.0\.11:(\d+)/.exec(line)?.[1];
    if (proto && port) out[proto] = Number(port);
  }
  return out.udp && out.tcp ? { udp: out.udp, tcp: out.tcp } : null;
}

/** vxnet's rule lines (`-A CHAIN …`) in an iptables-save text, by table. */
export function ownRules(save: string): { nat: string[]; filter: string[] } {
  const out = { nat: [] as string[], filter: [] as string[] };
  let table: 'nat' | 'filter' | null = null;
  for (const line of save.split('\n')) {
    if (line.startsWith('*')) table = line === '*nat' ? 'nat' : line === '*filter' ? 'filter' : null;
    else if (table && line.startsWith('-A ') && line.includes(`--comment ${NETNS_DNS_COMMENT}`)) out[table].push(line);
  }
  return out;
}

function check(spec: NetnsDnsSpec): void {
  for (const [what, ip] of [['gateway', spec.gateway], ['container address', spec.containerIp]] as const) {
    if (!isIPv4(ip)) throw vxError('VXNET_ERR_FIREWALL', `refusing a container DNS redirect: ${what} ${JSON.stringify(ip)} is not IPv4`);
  }
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535) throw vxError('VXNET_ERR_FIREWALL', `refusing a container DNS redirect to port ${spec.port}`);
}

/** The nat and filter rules for one container (pure, unit-tested). */
export function netnsDnsRules(spec: NetnsDnsSpec, docker: DockerResolverPorts): { nat: string[]; filter: string[] } {
  check(spec);
  const { gateway: gw, containerIp: cip, port } = spec;
  const nat: string[] = [];
  (['udp', 'tcp'] as const).forEach((p, i) => {
    nat.push(`-I OUTPUT ${i + 1} -d ${DOCKER_RESOLVER}/32 -p ${p} -m ${p} --dport 53 ${COMMENT} -j DNAT --to-destination ${gw}:${port}`);
    nat.push(`-A POSTROUTING -s 127.0.0.0/8 -d ${gw}/32 -p ${p} -m ${p} --dport ${port} ${COMMENT} -j SNAT --to-source ${cip}`);
    nat.push(`-A PREROUTING -s ${gw}/32 -d ${cip}/32 -p ${p} -m ${p} --dport ${port} ${COMMENT} -j DNAT --to-destination ${DOCKER_RESOLVER}:${docker[p]}`);
  });
  const filter = [`-A INPUT ! -i lo -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT ${COMMENT} -j DROP`];
  return { nat, filter };
}

/** Whether the first two nat OUTPUT rules are vxnet's (Docker did not insert above them). */
export function ownRulesFirst(natSave: string): boolean {
  const output = natSave.split('\n').filter((l) => l.startsWith('-A OUTPUT '));
  return output.length >= 2 && output.slice(0, 2).every((l) => l.includes(`--comment ${NETNS_DNS_COMMENT}`));
}

/** iptables-restore input: delete `existing`, then add `add` (either may be empty). */
export function restoreText(existing: { nat: string[]; filter: string[] }, add: { nat: string[]; filter: string[] }): string {
  const del = (rules: string[]): string[] => rules.map((r) => r.replace(/^-A /, '-D '));
  const lines: string[] = [];
  for (const t of ['nat', 'filter'] as const) {
    const body = [...del(existing[t]), ...add[t]];
    if (body.length) lines.push(`*${t}`, ...body, 'COMMIT');
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

function inNetns(sandboxKey: string, argv: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('nsenter', [`--net=${sandboxKey}`, '--', ...argv], { encoding: 'utf8', timeout: EXEC_TIMEOUT_MS }, (err, stdout, stderr) => {
      if (err) reject(vxError('VXNET_ERR_FIREWALL', `${argv[0]} in ${sandboxKey} failed: ${stderr.trim() || err.message}`, err));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/**
 * One table's section (`*name` … `COMMIT`) of an iptables-save text, or ''. The order of the
 * tables differs between backends (iptables-nft-save prints filter before nat), so sections are
 * cut by name, never by position.
 */
export function tableSection(save: string, table: 'nat' | 'filter'): string {
  const out: string[] = [];
  let inside = false;
  for (const line of save.split('\n')) {
    if (line.startsWith('*')) inside = line === `*${table}`;
    if (inside) out.push(line);
    if (inside && line === 'COMMIT') inside = false;
  }
  return out.length ? `${out.join('\n')}\n` : '';
}

/** The backend whose nat table holds Docker's resolver rules, and its whole save text. */
async function dockerBackend(sandboxKey: string): Promise<{ backend: Backend; save: string } | null> {
  for (const backend of ['nft', 'legacy'] as const) {
    const save = await inNetns(sandboxKey, [`iptables-${backend}-save`]).catch(() => '');
    if (save.includes('-A DOCKER_OUTPUT ')) return { backend, save };
  }
  return null;
}

/** The legacy backend takes the xtables lock (-w); nft changes are transactions without one. */
function restoreCmd(backend: Backend): string {
  return backend === 'legacy' ? 'iptables-legacy-restore -w --noflush' : 'iptables-nft-restore --noflush';
}

export type EnsureResult = 'added' | 'kept' | 'no-docker-resolver';

/**
 * Puts vxnet's redirect in the container's namespace (idempotent: kept when in place and
 * first; rewritten when Docker's ports changed or Docker inserted above it).
 */
export async function ensureNetnsDns(sandboxKey: string, spec: NetnsDnsSpec): Promise<EnsureResult> {
  check(spec);
  const found = await dockerBackend(sandboxKey);
  if (!found) return 'no-docker-resolver';
  const nat = tableSection(found.save, 'nat');
  const ports = dockerResolverPorts(nat);
  if (!ports) return 'no-docker-resolver';
  const want = netnsDnsRules(spec, ports);
  const have = ownRules(found.save);
  const wantText = (r: string): string => r.replace(/^-I OUTPUT \d+ /, '-A OUTPUT ');
  const same = have.nat.length === want.nat.length && want.nat.every((r) => have.nat.includes(wantText(r))) && have.filter.length === want.filter.length;
  if (same && ownRulesFirst(nat)) return 'kept';
  const text = restoreText(have, want);
  await inNetns(sandboxKey, ['sh', '-c', `echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet && exec ${restoreCmd(found.backend)}`], text);
  return 'added';
}

/** Removes vxnet's rules (and route_localnet) from the namespace; a gone namespace is fine. */
export async function removeNetnsDns(sandboxKey: string): Promise<void> {
  for (const backend of ['nft', 'legacy'] as const) {
    const save = await inNetns(sandboxKey, [`iptables-${backend}-save`]).catch(() => '');
    const have = ownRules(save);
    const text = restoreText(have, { nat: [], filter: [] });
    if (!text) continue;
    await inNetns(sandboxKey, ['sh', '-c', `exec ${restoreCmd(backend)}`], text);
    await inNetns(sandboxKey, ['sh', '-c', 'echo 0 > /proc/sys/net/ipv4/conf/all/route_localnet']);
  }
}
