// iptables rules for vxnet's bridges. The bridges live in the host netns, where dockerd sets
// the FORWARD policy to DROP and net.bridge.bridge-nf-call-iptables=1: frames between two
// ports of one bridge then traverse iptables FORWARD and are dropped unless allowed.
//
// vxnet keeps its rules in chains of its own, tagged `-m comment --comment vxnet`:
//   FORWARD ... DOCKER-USER jump, VXNET-ISOLATION jump (right after it), Docker's rules, ..., VXNET-FORWARD jump (appended)
//   VXNET-FORWARD:   -i BR -o BR -j ACCEPT             per bridge
//   VXNET-ISOLATION: -i BR ! -o BR -j DROP, ! -i BR -o BR -j DROP   per internal bridge
// The isolation jump must precede Docker's `-i docker0 ! -o docker0 -j ACCEPT`, which would
// otherwise let docker0 containers reach an internal network; DOCKER-USER stays first.
//
// iptables runs through execFile (never a shell), with arguments built only from validated
// names, one operation at a time in this process, and `-w` for the xtables lock (other
// processes, dockerd included).
import { execFile } from 'node:child_process';
import { vxError } from '../errors';
import { IFNAME_MAX } from './types';

const IPTABLES = 'iptables';
const FORWARD = 'FORWARD';
const DOCKER_USER = 'DOCKER-USER';
export const FORWARD_CHAIN = 'VXNET-FORWARD';
export const ISOLATION_CHAIN = 'VXNET-ISOLATION';
const COMMENT = ['-m', 'comment', '--comment', 'vxnet'];
/** iptables exits 1 for "no such rule/chain" and "already exists"; other codes are real failures. */
const EXIT_NOT_FOUND = 1;
const IFNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

let queue: Promise<unknown> = Promise.resolve();

/** Resolves with the exit code; rejects only when iptables cannot be run at all. */
function run(args: string[]): Promise<Result> {
  return new Promise((resolve, reject) => {
    execFile(IPTABLES, ['-w', ...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) return resolve({ code: 0, stdout, stderr });
      const code = (err as NodeJS.ErrnoException & { code?: unknown }).code;
      if (typeof code === 'number') return resolve({ code, stdout, stderr });
      reject(vxError('VXNET_ERR_FIREWALL', `could not run ${IPTABLES}: ${err.message}`, err));
    });
  });
}

/** Public operations run one at a time: two interleaved -C/-A pairs would add a rule twice. */
function exclusive<T>(fn: () => Promise<T>): Promise<T> {
  const next = queue.then(fn);
  queue = next.catch(() => undefined);
  return next;
}

async function must(args: string[], action: string): Promise<string> {
  const r = await run(args);
  if (r.code !== 0) throw vxError('VXNET_ERR_FIREWALL', `could not ${action}: ${r.stderr.trim() || `exit ${r.code}`}`);
  return r.stdout;
}

async function check(args: string[], action: string): Promise<boolean> {
  const r = await run(args);
  if (r.code === 0) return true;
  if (r.code === EXIT_NOT_FOUND) return false;
  throw vxError('VXNET_ERR_FIREWALL', `could not ${action}: ${r.stderr.trim() || `exit ${r.code}`}`);
}

function validBridge(bridge: string): string {
  if (bridge.length > IFNAME_MAX || !IFNAME_RE.test(bridge)) {
    throw vxError('VXNET_ERR_FIREWALL', `refusing iptables rules for invalid interface name ${JSON.stringify(bridge)}`);
  }
  return bridge;
}

async function chainExists(chain: string): Promise<boolean> {
  return check(['-S', chain], `list chain ${chain}`);
}

async function ensureChain(chain: string): Promise<void> {
  if (await chainExists(chain)) return;
  const r = await run(['-N', chain]);
  if (r.code === 0 || (await chainExists(chain))) return; // created concurrently by another process
  throw vxError('VXNET_ERR_FIREWALL', `could not create chain ${chain}: ${r.stderr.trim()}`);
}

async function ensureRule(chain: string, rule: string[]): Promise<void> {
  if (await check(['-C', chain, ...rule], `check rule in ${chain}`)) return;
  await must(['-A', chain, ...rule], `add rule to ${chain}`);
}

async function deleteRule(chain: string, rule: string[]): Promise<void> {
  // Loop: a rule added twice by hand must not survive removal.
  while (await check(['-C', chain, ...rule], `check rule in ${chain}`)) {
    await must(['-D', chain, ...rule], `delete rule from ${chain}`);
  }
}

function jump(chain: string): string[] {
  return [...COMMENT, '-j', chain];
}

async function forwardRules(): Promise<string[]> {
  const out = await must(['-S', FORWARD], `list chain ${FORWARD}`);
  return out.split('\n').filter((l) => l.startsWith(`-A ${FORWARD} `));
}

function jumpsTo(line: string, chain: string): boolean {
  return /\s-j (\S+)\s*$/.exec(line)?.[1] === chain;
}

/** The isolation jump sits right after the DOCKER-USER jump, or first when there is none. */
async function ensureIsolationJump(): Promise<void> {
  let rules = await forwardRules();
  const want = () => rules.findIndex((l) => jumpsTo(l, DOCKER_USER)) + 1; // 0-based slot after DOCKER-USER
  const at = rules.findIndex((l) => jumpsTo(l, ISOLATION_CHAIN));
  if (at >= 0 && at === want()) return;
  if (at >= 0) {
    await deleteRule(FORWARD, jump(ISOLATION_CHAIN));
    rules = await forwardRules();
  }
  await must(['-I', FORWARD, String(want() + 1), ...jump(ISOLATION_CHAIN)], `insert jump to ${ISOLATION_CHAIN}`);
}

/**
 * The filter table as `iptables -S` prints it, read once per operation: in the common case
 * (everything already in place) one iptables run answers every question, where a -C per rule
 * and chain cost a process each (2-4 ms apiece, 7 per Join, measured in bench/).
 */
interface RuleSnapshot {
  chains: Set<string>;
  lines: string[];
}

async function snapshot(): Promise<RuleSnapshot> {
  const out = await must(['-S'], 'list iptables rules');
  const lines = out.split('\n');
  const chains = new Set<string>();
  for (const l of lines) {
    const m = /^-[NP] (\S+)/.exec(l);
    if (m) chains.add(m[1]);
  }
  return { chains, lines };
}

/**
 * True only when the snapshot shows the rule exactly as iptables prints it. A false answer is
 * not trusted to add: the -C/-A path below checks again, so a formatting difference between
 * iptables versions can cost a call but never duplicate a rule.
 */
function shows(snap: RuleSnapshot, chain: string, rule: string[]): boolean {
  return snap.lines.includes(`-A ${chain} ${rule.join(' ')}`);
}

function mentions(snap: RuleSnapshot, chain: string, br: string): boolean {
  return snap.lines.some((l) => l.startsWith(`-A ${chain} `) && l.split(' ').includes(br));
}

async function ensureRuleUnlessShown(snap: RuleSnapshot, chain: string, rule: string[]): Promise<void> {
  if (!shows(snap, chain, rule)) await ensureRule(chain, rule);
}

/** Deletes each copy the snapshot shows with one -D apiece; anything else goes the -C/-D way. */
async function deleteRuleShown(snap: RuleSnapshot, chain: string, rule: string[]): Promise<void> {
  const copies = snap.lines.filter((l) => l === `-A ${chain} ${rule.join(' ')}`).length;
  if (copies === 0) return deleteRule(chain, rule);
  for (let i = 0; i < copies; i++) await must(['-D', chain, ...rule], `delete rule from ${chain}`);
}

function isolationJumpInPlace(snap: RuleSnapshot): boolean {
  const rules = snap.lines.filter((l) => l.startsWith(`-A ${FORWARD} `));
  const at = rules.findIndex((l) => jumpsTo(l, ISOLATION_CHAIN));
  return at >= 0 && at === rules.findIndex((l) => jumpsTo(l, DOCKER_USER)) + 1;
}

/**
 * B: superseded by A's firewall. Published ports (ports/, portmap.ts): DNATed traffic into a
 * vxnet bridge and its replies out of one pass FORWARD (policy DROP) here, before Docker's rules.
 * Their own comment keeps them out of listRuleBridges (which reads `--comment vxnet` lines).
 */
const PORTS_INTERIM_COMMENT = ['-m', 'comment', '--comment', 'B-ports-interim'];
const PORTS_INTERIM_RULES = [
  ['-o', 'vxb-+', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED,DNAT', ...PORTS_INTERIM_COMMENT, '-j', 'ACCEPT'],
  ['-i', 'vxb-+', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', ...PORTS_INTERIM_COMMENT, '-j', 'ACCEPT'],
];

async function ensurePortsInterimRules(snap: RuleSnapshot): Promise<void> {
  const top = snap.lines.filter((l) => l.startsWith(`-A ${ISOLATION_CHAIN} `)).slice(0, PORTS_INTERIM_RULES.length);
  if (PORTS_INTERIM_RULES.every((r, i) => top[i] === `-A ${ISOLATION_CHAIN} ${r.join(' ')}`)) return;
  for (const rule of PORTS_INTERIM_RULES) await deleteRule(ISOLATION_CHAIN, rule);
  for (const [i, rule] of PORTS_INTERIM_RULES.entries()) await must(['-I', ISOLATION_CHAIN, String(i + 1), ...rule], `insert rule into ${ISOLATION_CHAIN}`);
}

async function ensureChains(snap: RuleSnapshot): Promise<void> {
  if (!snap.chains.has(FORWARD_CHAIN)) await ensureChain(FORWARD_CHAIN);
  if (!snap.chains.has(ISOLATION_CHAIN)) await ensureChain(ISOLATION_CHAIN);
  await ensurePortsInterimRules(snap);
  // Appended, so DOCKER-USER (and Docker's own chains) are consulted first.
  await ensureRuleUnlessShown(snap, FORWARD, jump(FORWARD_CHAIN));
  if (!isolationJumpInPlace(snap)) await ensureIsolationJump();
}

function acceptRule(br: string): string[] {
  return ['-i', br, '-o', br, ...COMMENT, '-j', 'ACCEPT'];
}

function isolationRules(br: string): string[][] {
  return [
    ['-i', br, '!', '-o', br, ...COMMENT, '-j', 'DROP'],
    ['!', '-i', br, '-o', br, ...COMMENT, '-j', 'DROP'],
  ];
}

export interface BridgeRuleOptions {
  /** Docker's --internal: nothing enters or leaves the bridge except between its own ports. */
  internal: boolean;
}

/** Allows traffic between the ports of `bridge`; for an internal network, drops everything else in or out. */
export async function ensureBridgeRules(bridge: string, opts: BridgeRuleOptions): Promise<void> {
  const br = validBridge(bridge);
  await exclusive(async () => {
    const snap = await snapshot();
    await ensureChains(snap);
    for (const rule of isolationRules(br)) {
      if (opts.internal) await ensureRuleUnlessShown(snap, ISOLATION_CHAIN, rule);
      else if (mentions(snap, ISOLATION_CHAIN, br)) await deleteRule(ISOLATION_CHAIN, rule);
    }
    await ensureRuleUnlessShown(snap, FORWARD_CHAIN, acceptRule(br));
  });
}

/** Removes every vxnet rule for `bridge`; resolves when there is none (or no vxnet chain at all). */
export async function removeBridgeRules(bridge: string): Promise<void> {
  const br = validBridge(bridge);
  await exclusive(async () => {
    const snap = await snapshot();
    if (mentions(snap, ISOLATION_CHAIN, br)) {
      for (const rule of isolationRules(br)) await deleteRuleShown(snap, ISOLATION_CHAIN, rule);
    }
    if (mentions(snap, FORWARD_CHAIN, br)) await deleteRuleShown(snap, FORWARD_CHAIN, acceptRule(br));
  });
}

/** Bridges named in vxnet's rules, for orphan cleanup. */
export async function listRuleBridges(): Promise<string[]> {
  const names = new Set<string>();
  await exclusive(async () => {
    for (const chain of [FORWARD_CHAIN, ISOLATION_CHAIN]) {
      if (!(await chainExists(chain))) continue;
      const out = await must(['-S', chain], `list chain ${chain}`);
      for (const line of out.split('\n')) {
        if (!line.startsWith(`-A ${chain} `) || !line.includes('--comment vxnet')) continue;
        for (const m of line.matchAll(/(?:^|\s)-[io] (\S+)/g)) names.add(m[1]);
      }
    }
  });
  return [...names].sort();
}

/** Removes vxnet's jumps and chains (uninstall, tests). */
export async function removeFirewall(): Promise<void> {
  await exclusive(async () => {
    for (const chain of [FORWARD_CHAIN, ISOLATION_CHAIN]) {
      if (!(await chainExists(chain))) continue;
      await deleteRule(FORWARD, jump(chain));
      await must(['-F', chain], `flush chain ${chain}`);
      await must(['-X', chain], `delete chain ${chain}`);
    }
  });
}
