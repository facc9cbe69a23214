// Watches which sources one destination's elements of an nftables concatenated set allow
// (`inet vxnet-policy allow_in`: DST . SRC-RANGE . PROTO . PORTS), as the kernel commits them.
//
// Why a subscription and not a poll: nft-set-events.js (run in the host) listens on nf_tables'
// netlink multicast group, so each committed change arrives within a fraction of a millisecond,
// stamped on receipt, and the watch costs the host nothing between changes. Polling `nft -j list
// set` would cost a process start (~30 ms here) plus a ruleset read per sample: coarser than the
// 10 ms the figure needs, and a load on the host being measured. (`nft monitor`, the obvious
// tool, segfaults with nft 1.0.6 on this kernel.) The starting content is read once with `nft list`.
import type { ChildProcess } from 'node:child_process';
import { Host, stopInHost } from '../../test/helpers/hosts';
import { epochMs, sleep } from './runner';
import { startEventChild } from './event-child';

/** An IPv4 address or range as nft prints it (a.b.c.d, a.b.c.d-e.f.g.h, a.b.c.d/len) → [lo, hi]. */
export function ipv4Span(text: string): [number, number] | null {
  const num = (s: string): number | null => {
    const p = s.split('.').map(Number);
    if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) return null;
    return ((p[0] << 24) >>> 0) + (p[1] << 16) + (p[2] << 8) + p[3];
  };
  const [a, b] = text.split('-');
  if (b !== undefined) {
    const lo = num(a);
    const hi = num(b);
    return lo === null || hi === null ? null : [lo, hi];
  }
  const [base, len] = a.split('/');
  const lo = num(base);
  if (lo === null) return null;
  if (len === undefined) return [lo, lo];
  return [lo, lo + 2 ** (32 - Number(len)) - 1];
}

/** One spelling per range ("lo-hi" as numbers), whichever way nft or the kernel wrote it. */
function spanKey(text: string): string {
  const s = ipv4Span(text);
  if (!s) throw new Error(`not an IPv4 address or range: ${text}`);
  return `${s[0]}-${s[1]}`;
}

export class SetSourceWatch {
  private readonly srcs = new Set<string>();
  /** Each committed change that touched `dst`: when it arrived and the sources after it. */
  private readonly history: Array<{ t: number; srcs: string[] }> = [];
  private readonly errors: string[] = [];
  private child: ChildProcess | null = null;

  constructor(private readonly host: Host, private readonly table: string, private readonly set: string, private readonly dst: string) {}

  async start(): Promise<void> {
    this.child = await startEventChild<{ error?: string; t: number; op: 'add' | 'delete'; dst: string; lo: string; hi: string }>(this.host, 'nft-set-events.js', [this.table, this.set], (ev) => {
      if (ev.error) this.errors.push(ev.error);
      else if (ev.dst === this.dst) this.apply(ev.t, ev.op, spanKey(`${ev.lo}-${ev.hi}`));
    });
    // Subscribed before the starting content is read: a change in between applies twice, harmlessly.
    const listing = await this.host.execOk(['nft', 'list', 'set', 'inet', this.table, this.set]);
    const elems = /elements = \{([^}]*)\}/.exec(listing)?.[1] ?? '';
    for (const e of elems.split(',').map((x) => x.trim().split(' . '))) if (e[0] === this.dst && e[1]) this.srcs.add(spanKey(e[1]));
    this.history.push({ t: epochMs(), srcs: [...this.srcs] });
  }

  async stop(): Promise<void> {
    if (this.child) await stopInHost(this.child, 2000);
    this.child = null;
  }

  /** Notifications lost (the kernel said ENOBUFS): the view may be wrong after one. */
  lost(): string[] {
    return [...this.errors];
  }

  private apply(t: number, op: 'add' | 'delete', src: string): void {
    if (op === 'add') this.srcs.add(src);
    else this.srcs.delete(src);
    // Several elements in one datagram share its stamp: one history entry per stamp.
    const last = this.history[this.history.length - 1];
    if (last && last.t === t) last.srcs = [...this.srcs];
    else this.history.push({ t, srcs: [...this.srcs] });
  }

  /** Whether `ip` lies in one of the sources of a history entry. */
  private static holds(srcs: string[], ip: string): boolean {
    const x = ipv4Span(ip)?.[0];
    return x !== undefined && srcs.some((s) => {
      const [lo, hi] = s.split('-').map(Number);
      return lo <= x && x <= hi;
    });
  }

  /**
   * The epoch ms of the first change at or after `since` after which `ip` is allowed (`present`)
   * or no longer allowed; `since` itself when that already held then. Waits up to `timeoutMs`
   * (checking the in-memory history every 5 ms: no cost to the host); null on timeout.
   */
  async when(ip: string, present: boolean, since: number, timeoutMs: number): Promise<number | null> {
    const deadline = epochMs() + timeoutMs;
    for (;;) {
      let prior: { t: number; srcs: string[] } | undefined;
      for (const h of this.history) {
        if (h.t < since) prior = h;
        else if (prior && SetSourceWatch.holds(prior.srcs, ip) === present) return since;
        else if (SetSourceWatch.holds(h.srcs, ip) === present) return h.t;
      }
      if (prior && SetSourceWatch.holds(prior.srcs, ip) === present) return since;
      if (epochMs() > deadline) return null;
      await sleep(5);
    }
  }

  /** The sources allowed to `dst` now, as the watch saw them ("lo-hi" as numbers). */
  current(): string[] {
    return [...this.srcs];
  }
}
