// Shell helpers for dataplane integration tests. The integration project runs inside a
// throwaway network namespace (`ip netns exec <ns> npx jest --selectProjects integration`),
// so tests may create links directly; each test removes what it made, by name.
// Reading back through `ip -j` / `bridge -j` / `iptables -S` checks the kernel independently
// of the netlink code under test.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/** Runs a command (no shell) and returns stdout; throws with stderr on failure. */
export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs a command; false instead of throwing when it fails. */
export function trySh(cmd: string, args: string[]): boolean {
  try {
    sh(cmd, args);
    return true;
  } catch {
    return false;
  }
}

export function ipJson<T = any>(args: string[]): T {
  return JSON.parse(sh('ip', ['-j', ...args]) || '[]') as T;
}

export function bridgeJson<T = any>(args: string[]): T {
  return JSON.parse(sh('bridge', ['-j', ...args]) || '[]') as T;
}

/** `ip -d -j link show dev NAME`, or null when the link does not exist. */
export function linkDetails(name: string): any | null {
  try {
    return ipJson(['-d', 'link', 'show', 'dev', name])[0] ?? null;
  } catch {
    return null;
  }
}

/** A short random suffix: names must stay within 15 characters. */
export function suffix(len = 5): string {
  return randomBytes(4).toString('hex').slice(0, len);
}

/** Deletes links by name, ignoring those already gone. */
export function deleteLinks(...names: string[]): void {
  for (const n of names) trySh('ip', ['link', 'del', n]);
}

/** Creates a named netns (a "container") and returns its name; delete it with deleteNetns. */
export function addNetns(prefix = 'vxt'): string {
  const name = `${prefix}-${suffix(8)}`;
  sh('ip', ['netns', 'add', name]);
  return name;
}

export function deleteNetns(name: string): void {
  trySh('ip', ['netns', 'del', name]);
}

/** Runs a command inside a netns created by addNetns. */
export function inNetns(ns: string, cmd: string, args: string[]): string {
  return sh('ip', ['netns', 'exec', ns, cmd, ...args]);
}

export function tryInNetns(ns: string, cmd: string, args: string[]): boolean {
  return trySh('ip', ['netns', 'exec', ns, cmd, ...args]);
}

/** Global-scope addresses of a link as "ip/prefix". */
export function globalAddrs(name: string): string[] {
  const [link] = ipJson(['addr', 'show', 'dev', name]);
  return (link?.addr_info ?? [])
    .filter((a: any) => a.scope === 'global')
    .map((a: any) => `${a.local}/${a.prefixlen}`)
    .sort();
}
