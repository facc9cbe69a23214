// NAT rules for published ports, in chains of vxnet's own in the nat table (the filter side is
// firewall.ts: DNATed traffic into vxnet bridges is accepted there by conntrack state):
//
//   PREROUTING  -m addrtype --dst-type LOCAL -j VXNET-DNAT       traffic from other machines and containers
//   OUTPUT      -m addrtype --dst-type LOCAL -j VXNET-DNAT       the host itself, 127.0.0.1 included
//   POSTROUTING -j VXNET-PORTS-POSTROUTING
//   VXNET-DNAT: per binding  [-d HOSTIP] -p P --dport HP -j DNAT --to-destination CIP:CP
//   VXNET-PORTS-POSTROUTING:
//     -s 127.0.0.0/8 -o vxb-+ -j MASQUERADE                      127.0.0.1 cannot leave the host: take the gateway's address
//     per endpoint  -s SUBNET -d CIP -o BR --ctstate DNAT -j MASQUERADE   hairpin: a container of the same network
//                                                                       reaching HOST:HP answers through the host
//
// 127.0.0.1 goes through DNAT in OUTPUT, which needs route_localnet on the bridge (the kernel
// otherwise refuses to route a 127/8 source out of a real interface). This was chosen over a
// userland proxy because the kernel keeps serving while the driver is away (crash, restart,
// upgrade) and no byte is copied in userspace.
//
// Every per-endpoint rule carries the comment `vxnet-ports:<EndpointID>`: removal and reconcile
// find an endpoint's rules by it. Adding or removing one endpoint's rules is one
// iptables-restore run, whatever the number of rules already there.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import { vxError } from '../errors';
import { IFNAME_MAX } from './types';

export const DNAT_CHAIN = 'VXNET-DNAT';
export const PORTS_POSTROUTING_CHAIN = 'VXNET-PORTS-POSTROUTING';
const TAG = 'vxnet-ports';
const BRIDGE_WILDCARD = 'vxb-+';
/** iptables exits 1 for "no such rule/chain" and "already exists". */
const EXIT_NOT_FOUND = 1;
const IFNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const IPV4_RE = /^\d{1,3}(\.\d{1,3}){3}$/;
const CIDR4_RE = /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/;
const ENDPOINT_RE = /^[a-z0-9]{10,64}$/;

export interface PortRuleBinding {
  proto: 'tcp' | 'udp';
  /** 0.0.0.0: every local address. */
  hostIp: string;
  hostPort: number;
  containerPort: number;
}

/** One endpoint's published ports, as the rules need them. */
export interface PortRules {
  endpointId: string;
  containerIp: string;
  bridge: string;
  /** The container's subnet (CIDR): sources from it reaching a binding are hairpin traffic. */
  subnet: string;
  bindings: PortRuleBinding[];
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

let queue: Promise<unknown> = Promise.resolve();

/** One change at a time in this process: two interleaved check-then-add pairs would add twice. */
function exclusive<T>(fn: () => Promise<T>): Promise<T> {
  const next = queue.then(fn);
  queue = next.catch(() => undefined);
  return next;
}

function exec(cmd: string, args: string[], input?: string): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) return resolve({ code: 0, stdout, stderr });
      const code = (err as NodeJS.ErrnoException & { code?: unknown }).code;
      if (typeof code === 'number') return resolve({ code, stdout, stderr });
      reject(vxError('VXNET_ERR_FIREWALL', `could not run ${cmd}: ${err.message}`, err));
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

function nat(args: string[]): Promise<Result> {
  return exec('iptables', ['-w', '-t', 'nat', ...args]);
}

async function mustNat(args: string[], action: string): Promise<string> {
  const r = await nat(args);
  if (r.code !== 0) throw vxError('VXNET_ERR_FIREWALL', `could not ${action}: ${r.stderr.trim() || `exit ${r.code}`}`);
  return r.stdout;
}

/** Applies `-A`/`-D` lines to the nat table in one run, all or nothing. */
async function restore(lines: string[]): Promise<Result> {
  if (lines.length === 0) return { code: 0, stdout: '', stderr: '' };
  return exec('iptables-restore', ['-w', '--noflush'], `*nat\n${lines.join('\n')}\nCOMMIT\n`);
}

function checkName(re: RegExp, v: string, what: string): string {
  if (!re.test(v) || v.length > 64) throw vxError('VXNET_ERR_FIREWALL', `refusing nat rules for invalid ${what} ${JSON.stringify(v)}`);
  return v;
}

function validBridge(name: string): string {
  if (name.length > IFNAME_MAX) throw vxError('VXNET_ERR_FIREWALL', `refusing invalid interface name ${JSON.stringify(name)}`);
  return checkName(IFNAME_RE, name, 'interface name');
}

function tagOf(endpointId: string): string {
  return `${TAG}:${checkName(ENDPOINT_RE, endpointId, 'endpoint id')}`;
}

const COMMON_JUMP = ['-m', 'comment', '--comment', 'vxnet'];

/** Rules of the chains themselves: [chain, rule]. */
const BASE_RULES: Array<[string, string[]]> = [
  ['PREROUTING', ['-m', 'addrtype', '--dst-type', 'LOCAL', ...COMMON_JUMP, '-j', DNAT_CHAIN]],
  ['OUTPUT', ['-m', 'addrtype', '--dst-type', 'LOCAL', ...COMMON_JUMP, '-j', DNAT_CHAIN]],
  ['POSTROUTING', [...COMMON_JUMP, '-j', PORTS_POSTROUTING_CHAIN]],
  [PORTS_POSTROUTING_CHAIN, ['-s', '127.0.0.0/8', '-o', BRIDGE_WILDCARD, '-m', 'comment', '--comment', TAG, '-j', 'MASQUERADE']],
];

/** The per-endpoint rules, as `-A` lines without the action (chain first). */
export function endpointRules(r: PortRules): string[][] {
  const tag = tagOf(r.endpointId);
  const cip = checkName(IPV4_RE, r.containerIp, 'container address');
  const bridge = validBridge(r.bridge);
  const rules: string[][] = [];
  for (const b of r.bindings) {
    const dst = b.hostIp === '0.0.0.0' ? [] : ['-d', `${checkName(IPV4_RE, b.hostIp, 'host address')}/32`];
    rules.push([
      DNAT_CHAIN, ...dst, '-p', b.proto, '-m', b.proto, '--dport', String(b.hostPort),
      '-m', 'comment', '--comment', tag, '-j', 'DNAT', '--to-destination', `${cip}:${b.containerPort}`,
    ]);
  }
  rules.push([
    PORTS_POSTROUTING_CHAIN, '-s', checkName(CIDR4_RE, r.subnet, 'subnet'), '-d', `${cip}/32`, '-o', bridge,
    '-m', 'conntrack', '--ctstate', 'DNAT', '-m', 'comment', '--comment', tag, '-j', 'MASQUERADE',
  ]);
  return rules;
}

async function chainExists(chain: string): Promise<boolean> {
  const r = await nat(['-S', chain]);
  if (r.code === 0) return true;
  if (r.code === EXIT_NOT_FOUND) return false;
  throw vxError('VXNET_ERR_FIREWALL', `could not list nat chain ${chain}: ${r.stderr.trim()}`);
}

/** Creates vxnet's nat chains and their jumps where missing (idempotent). */
export function ensurePortChains(): Promise<void> {
  return exclusive(async () => {
    const table = await mustNat(['-S'], 'list the nat table');
    const lines = new Set(table.split('\n'));
    for (const chain of [DNAT_CHAIN, PORTS_POSTROUTING_CHAIN]) {
      if (lines.has(`-N ${chain}`)) continue;
      const r = await nat(['-N', chain]);
      if (r.code !== 0 && !(await chainExists(chain))) throw vxError('VXNET_ERR_FIREWALL', `could not create nat chain ${chain}: ${r.stderr.trim()}`);
    }
    for (const [chain, rule] of BASE_RULES) {
      if (lines.has(`-A ${chain} ${rule.join(' ')}`)) continue;
      const c = await nat(['-C', chain, ...rule]);
      if (c.code === 0) continue;
      await mustNat(['-A', chain, ...rule], `add a rule to nat chain ${chain}`);
    }
  });
}

/** Appends one endpoint's rules (the caller knows it has none yet: see syncPortRules otherwise). */
export async function addPortRules(r: PortRules): Promise<void> {
  const lines = endpointRules(r).map((rule) => `-A ${rule.join(' ')}`);
  return exclusive(async () => {
    const res = await restore(lines);
    if (res.code !== 0) throw vxError('VXNET_ERR_FIREWALL', `could not add nat rules for endpoint ${r.endpointId.slice(0, 12)}: ${res.stderr.trim() || `exit ${res.code}`}`);
  });
}

/** Lines of vxnet's port chains, as `iptables -S` prints them. */
async function portChainLines(): Promise<string[]> {
  const out: string[] = [];
  for (const chain of [DNAT_CHAIN, PORTS_POSTROUTING_CHAIN]) {
    const r = await nat(['-S', chain]);
    if (r.code === EXIT_NOT_FOUND) continue;
    if (r.code !== 0) throw vxError('VXNET_ERR_FIREWALL', `could not list nat chain ${chain}: ${r.stderr.trim()}`);
    out.push(...r.stdout.split('\n').filter((l) => l.startsWith(`-A ${chain} `)));
  }
  return out;
}

function ownerOf(line: string): string | null {
  return new RegExp(`--comment "?${TAG}:([a-z0-9]+)"?`).exec(line)?.[1] ?? null;
}

async function deleteShown(endpointIds: Set<string>): Promise<void> {
  const gone = (await portChainLines()).filter((l) => {
    const owner = ownerOf(l);
    return owner !== null && endpointIds.has(owner);
  });
  const res = await restore(gone.map((l) => `-D${l.slice(2)}`));
  if (res.code !== 0) throw vxError('VXNET_ERR_FIREWALL', `could not delete nat rules: ${res.stderr.trim() || `exit ${res.code}`}`);
}

/**
 * Removes one endpoint's rules. The common case is one iptables-restore built from the record;
 * when that fails (a rule already gone), the chains are read and whatever carries the
 * endpoint's tag is deleted.
 */
export async function removePortRules(r: PortRules): Promise<void> {
  const lines = endpointRules(r).map((rule) => `-D ${rule.join(' ')}`);
  return exclusive(async () => {
    if ((await restore(lines)).code === 0) return;
    await deleteShown(new Set([r.endpointId]));
  });
}

/** Removes every rule tagged with one of these endpoints (orphans found by reconcile). */
export function removePortRulesOf(endpointIds: string[]): Promise<void> {
  return exclusive(() => deleteShown(new Set(endpointIds)));
}

/** EndpointID → number of nat rules tagged with it. */
export function listPortRuleOwners(): Promise<Map<string, number>> {
  return exclusive(async () => {
    const owners = new Map<string, number>();
    for (const l of await portChainLines()) {
      const owner = ownerOf(l);
      if (owner) owners.set(owner, (owners.get(owner) ?? 0) + 1);
    }
    return owners;
  });
}

/**
 * 127.0.0.1 DNATed out of the bridge: without route_localnet the kernel refuses to route a
 * loopback source out of a real interface. Set per vxnet bridge, never host-wide.
 */
export async function enableRouteLocalnet(bridge: string): Promise<void> {
  const file = `/proc/sys/net/ipv4/conf/${validBridge(bridge)}/route_localnet`;
  try {
    if (fs.readFileSync(file, 'utf8').trim() === '1') return;
    fs.writeFileSync(file, '1');
  } catch (err) {
    throw vxError('VXNET_ERR_KERNEL', `could not enable route_localnet on ${bridge}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, err);
  }
}

/**
 * A container reaching its own published port through the host: with bridge-nf-call-iptables the
 * DNATed frame is bridged back out of the port it came in by, which the bridge refuses unless
 * the port is in hairpin mode (Docker sets the same for its bridge without the userland proxy).
 * Only ports of containers with published ports get it: hairpin also reflects their broadcasts.
 */
export async function enableHairpin(veth: string): Promise<void> {
  const file = `/sys/class/net/${validBridge(veth)}/brport/hairpin_mode`;
  try {
    if (fs.readFileSync(file, 'utf8').trim() === '1') return;
    fs.writeFileSync(file, '1');
  } catch (err) {
    throw vxError('VXNET_ERR_KERNEL', `could not enable hairpin mode on ${veth}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, err);
  }
}

/** Removes vxnet's nat chains and jumps (uninstall, tests). */
export function removePortmap(): Promise<void> {
  return exclusive(async () => {
    for (const [chain, rule] of BASE_RULES.slice(0, 3)) {
      while ((await nat(['-C', chain, ...rule])).code === 0) await mustNat(['-D', chain, ...rule], `delete a rule from nat chain ${chain}`);
    }
    for (const chain of [DNAT_CHAIN, PORTS_POSTROUTING_CHAIN]) {
      if (!(await chainExists(chain))) continue;
      await mustNat(['-F', chain], `flush nat chain ${chain}`);
      await mustNat(['-X', chain], `delete nat chain ${chain}`);
    }
  });
}
