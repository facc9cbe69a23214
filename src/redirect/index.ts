// Which frames skip the bridge (`--fast-path redirect`; dataplane/redirect-block.ts says how the
// kernel does it). Per network with a VXLAN device here, the wanted content of its block is:
//   - a root entry and a local entry for each local container that has an IPv4 address and that
//     the policy engine has decided and left unpoliced (none of its addresses in a policed set:
//     no rules, not pending, not on an isolated network);
//   - a remote entry for each MAC the peer table wants on the VXLAN device (never a local one).
// A frame from a local port to a remote container then goes straight to the VXLAN device, and a
// frame from the VXLAN device to a local container straight to its port. Everything else keeps
// taking the bridge. Policed containers keep the whole host path both ways, so conntrack, the
// policy table and the drop counters see all their frames, as without this path.
//
// Correctness rests on order, since a stale entry is the one thing that could let a frame by:
//   - before the policy table starts policing an address (policyApplying), its entries are gone;
//   - at Leave and DeleteEndpoint (forget) the port's entries are gone before the call returns;
//   - an entry is added only for a port that exists (its ifindex read) and a VXLAN device whose
//     ifindex is the one the block was built for (a rebuilt device gets a rebuilt block);
//   - removals go before additions in a change set, and a failed change set has its block
//     emptied at once and rebuilt from scratch at the next pass;
//   - at start the driver takes every block away (dataplane detachRedirects), so a block this
//     process has not built holds nothing, and a network with nothing to redirect needs no tc.
// Adding is lazy (a pass after the change); missing entries only cost speed.
//
// Cost: a pass looks only at what can have changed. The peer table's pass over a network
// (sync(lnet)) checks that network's device and its remote entries; a policy change checks the
// local ports of every block (no kernel call unless one changes: a changed block's device is read
// before its batch); a reconcile checks every block's device, and rebuilds only a block whose
// device was replaced (an unchanged block keeps its entries and counters). So a `docker run` on a
// host with a thousand networks costs a pass over that host's local containers, not a kernel
// call per network, and a remote endpoint costs a diff of its own network's entries.
import type { Logger } from '../log';
import type { NetworkRecord, EndpointRecord } from '../network/records';
import { vethNames, vxlanName } from '../network/names';
import { MAX_NODE, bucketOf } from '../dataplane/redirect-block';
import type { PortEntry, RedirectOp } from '../dataplane/redirect-block';

export interface RedirectKernel {
  apply(ops: RedirectOp[]): Promise<void>;
  ifindex(name: string): Promise<number | null>;
}

/** A local endpoint as the policy engine last decided it. */
export interface DecidedEndpoint {
  lnet: string;
  endpointId: string;
  ip: string | null;
  ip6: string | null;
}

export interface RedirectDeps {
  /** This host's endpoints in the policy engine's last applied plan. */
  decided(): Iterable<DecidedEndpoint>;
  records: { endpoint(lnet: string, endpointId: string): EndpointRecord | undefined; network(lnet: string): NetworkRecord | undefined };
  /** Networks with a VXLAN device here, and the remote MACs their device is programmed with. */
  peers: { activeNetworks(): Iterable<string>; remoteMacs(lnet: string): Iterable<string> };
  kernel: RedirectKernel;
  log: Logger;
}

interface Port extends PortEntry {
  /** Its IPv6 address: policed with it or without it, the container loses its entries. */
  ip6: string | null;
}

/** What one block holds (as far as this process programmed it). */
interface Block {
  lnet: string;
  vxv: string;
  vxvIndex: number;
  /**
   * false: nothing of it is in the kernel yet (a network with nothing to redirect costs no tc
   * process). A block this process has not built is empty or absent there: the driver takes every
   * block away at start, and empties one whose change failed or whose network left.
   */
  built: boolean;
  ports: Map<string, Port>;
  /** local MAC → its node in the local table */
  local: Map<string, { port: string; node: number }>;
  /** remote MAC → its node in the remote table */
  remote: Map<string, number>;
  /** nodes in use per "<table> <bucket>" (port, local, remote) */
  nodes: Map<string, Set<number>>;
}

interface WantPort {
  port: string;
  mac: string;
  ip: string;
  ip6: string | null;
}

interface WantBlock {
  lnet: string;
  vxv: string;
  ports: Map<string, WantPort>;
  /** null: the remote entries are not looked at in this pass (only the local ports changed). */
  remote: Set<string> | null;
}

/** What the next pass looks at (set by the calls that schedule it). */
interface Pending {
  /** Every network in full: device, ports and remote entries. */
  all: boolean;
  /** These networks in full (the peer table's pass over them). */
  networks: Set<string>;
  /** Every block's local ports (a policy change). */
  ports: boolean;
}

/** Pure: the lowest node id free in `used` (null when the bucket is full). */
export function freeNode(used: Set<number> | undefined): number | null {
  for (let n = 1; n <= MAX_NODE; n++) if (!used?.has(n)) return n;
  return null;
}

function bare(ip: string): string;
function bare(ip: string | null): string | null;
function bare(ip: string | null): string | null {
  return ip === null ? null : ip.split('/')[0];
}

export class RedirectPaths {
  private readonly blocks = new Map<number, Block>();
  /** Addresses the policy table polices (as of the change being applied or the last applied). */
  private policed = new Set<string>();
  /** Ports whose container left: no entry until their endpoint is gone. */
  private readonly left = new Set<string>();
  private chain: Promise<void> = Promise.resolve();
  private scheduled: Promise<void> | null = null;
  private pending: Pending = { all: false, networks: new Set(), ports: false };
  private closed = false;
  /** `--fast-path auto` while something else sees these frames (firewall-gate.ts): no block holds anything. */
  private paused: boolean;

  constructor(private readonly deps: RedirectDeps, opts: { paused?: boolean } = {}) {
    this.paused = opts.paused === true;
  }

  /**
   * A pass at the event loop's next turn (coalesced); never rejects. With `lnet`, that network's
   * block is checked (the peer table's pass over it); without, every block, each against its
   * device (start, reconcile: a device may have been replaced; only a replaced one is rebuilt).
   */
  sync(lnet?: string): Promise<void> {
    if (lnet === undefined) this.pending.all = true;
    else this.pending.networks.add(lnet);
    return this.schedule();
  }

  private schedule(): Promise<void> {
    if (this.scheduled) return this.scheduled;
    const run = this.queue(async () => {
      // The next turn: the policy engine's plan is set after its kernel update resolves.
      await new Promise((resolve) => setImmediate(resolve));
      this.scheduled = null;
      // Paused: what is pending waits (resume() asks for everything anyway).
      if (this.closed || this.paused) return;
      const pending = this.pending;
      this.pending = { all: false, networks: new Set(), ports: false };
      await this.pass(pending);
    });
    const done = run.catch(() => undefined);
    // queue() logs a failure already; a pass's own errors are per block and never reach here.
    this.scheduled = done;
    return done;
  }

  /**
   * Before the policy table changes to police `addresses`: the entries of every local container
   * with one of them are removed first. Rejects only if tc cannot run at all (then the policy
   * change must not go ahead on a path that may bypass it).
   */
  policyApplying(addresses: Iterable<string>): Promise<void> {
    const next = new Set(addresses);
    return this.queue(async () => {
      const gone = [...next].filter((a) => !this.policed.has(a));
      this.policed = new Set([...this.policed, ...next]);
      if (gone.length === 0) return;
      const hit = new Set(gone);
      await this.removePorts((p) => hit.has(p.ip) || (p.ip6 !== null && hit.has(p.ip6)));
    });
  }

  /** After the policy table changed: `addresses` is what it polices now. */
  policyApplied(addresses: Iterable<string>): void {
    this.policed = new Set(addresses);
    this.pending.ports = true;
    void this.schedule();
  }

  /** Leave / DeleteEndpoint: the port's entries go now, and stay away. */
  forget(endpointId: string): Promise<void> {
    const port = vethNames(endpointId).host;
    this.left.add(port);
    return this.queue(() => this.removePorts((p) => p.port === port));
  }

  /**
   * Every block emptied, in one change set (one tc process however many networks: the rule that
   * asked for it applies once this resolves), and none built again until resume(): frames take
   * the bridge. Blocks leave the map, so a resume rebuilds each from its setup.
   */
  pause(): Promise<void> {
    return this.queue(async () => {
      this.paused = true;
      const blocks = [...this.blocks.keys()];
      this.blocks.clear();
      await this.deps.kernel.apply(blocks.map((block) => ({ op: 'flush' as const, block })));
    });
  }

  /** Blocks built again, each in full, by a pass after every step queued before this call. */
  resume(): void {
    void this.queue(async () => {
      this.paused = false;
      this.pending.all = true;
    }).then(() => this.schedule());
  }

  /** What each block holds as far as this process programmed it (metrics). */
  entries(): Array<{ lnet: string; ports: number; remote: number }> {
    return [...this.blocks.values()].map((b) => ({ lnet: b.lnet, ports: b.ports.size, remote: b.remote.size }));
  }

  close(): void {
    this.closed = true;
  }

  /** Runs one step at a time; a failure is logged, never thrown, except for the steps that say so. */
  private queue(step: () => Promise<void>): Promise<void> {
    const run = this.chain.then(step);
    this.chain = run.catch((err: unknown) => this.deps.log.warn({ err }, 'redirect fast path: step failed; its blocks are rebuilt at the next pass'));
    return run;
  }

  /** Removes the entries of matching ports in every block; a block whose removal fails is emptied. */
  private async removePorts(match: (p: Port) => boolean): Promise<void> {
    for (const [block, b] of this.blocks) {
      const ops: RedirectOp[] = [];
      for (const p of [...b.ports.values()].filter(match)) ops.push(...this.dropPort(block, b, p));
      if (ops.length === 0) continue;
      try {
        await this.deps.kernel.apply(ops);
      } catch (err) {
        this.blocks.delete(block);
        // Emptied, the block only sends frames on to the bridge (this flush's own failure rejects).
        this.deps.log.warn({ err, block }, 'redirect fast path: removal failed, emptying the block');
        await this.deps.kernel.apply([{ op: 'flush', block }]);
      }
    }
  }

  /** This host's decided, unpoliced ports per network, and the MACs of all its containers there. */
  private localPorts(): Map<string, { ports: Map<string, WantPort>; macs: Set<string> }> {
    const { records } = this.deps;
    const out = new Map<string, { ports: Map<string, WantPort>; macs: Set<string> }>();
    const live = new Set<string>();
    for (const ep of this.deps.decided()) {
      const port = vethNames(ep.endpointId).host;
      live.add(port);
      const rec = records.endpoint(ep.lnet, ep.endpointId);
      if (!rec) continue;
      let mine = out.get(ep.lnet);
      if (!mine) out.set(ep.lnet, (mine = { ports: new Map(), macs: new Set() }));
      const mac = rec.mac.toLowerCase();
      // A local container's MAC is never sent to the tunnel, policed or not.
      mine.macs.add(mac);
      const ip = bare(ep.ip);
      const ip6 = bare(ep.ip6);
      if (ip === null || this.policed.has(ip) || (ip6 !== null && this.policed.has(ip6)) || this.left.has(port)) continue;
      mine.ports.set(port, { port, mac, ip, ip6 });
    }
    for (const port of this.left) if (!live.has(port)) this.left.delete(port);
    return out;
  }

  private async pass(pending: Pending): Promise<void> {
    const { records, peers } = this.deps;
    const active = new Map<number, string>();
    for (const lnet of peers.activeNetworks()) {
      const net = records.network(lnet);
      if (net) active.set(net.vni, lnet);
    }
    for (const [block, b] of this.blocks) {
      if (active.get(block) === b.lnet) continue;
      // The network left this host: its devices (and with them the block) are gone or going.
      this.blocks.delete(block);
      await this.deps.kernel.apply([{ op: 'flush', block }]).catch(() => undefined);
    }
    if (!pending.all && !pending.ports && pending.networks.size === 0) return;
    const local = this.localPorts();
    for (const [block, lnet] of active) {
      const mine = local.get(lnet);
      const known = this.blocks.get(block);
      // A block not looked at yet (or emptied after a failure), or one about to be built for a
      // local port, is done in full by any pass (its remote entries come with it).
      const full = pending.all || pending.networks.has(lnet) || !known || (!known.built && (mine?.ports.size ?? 0) > 0);
      if (!full && !pending.ports) continue;
      let remote: Set<string> | null = null;
      if (full) {
        remote = new Set(peers.remoteMacs(lnet));
        for (const mac of mine?.macs ?? []) remote.delete(mac);
      }
      const w: WantBlock = { lnet, vxv: vxlanName(block), ports: mine?.ports ?? new Map(), remote };
      try {
        await this.passBlock(block, w);
      } catch (err) {
        this.blocks.delete(block);
        this.deps.log.warn({ err, block, dev: w.vxv }, 'redirect fast path: could not program the block; emptied, it is rebuilt at the next pass');
        // tc ran every line of the batch: what came after the failed one may be in. Emptied,
        // the block sends everything on to the bridge until it is rebuilt.
        await this.deps.kernel.apply([{ op: 'flush', block }]).catch(() => undefined);
      }
    }
  }

  /** Brings one block in line with `w`; a full pass (w.remote set) reads its device first. */
  private async passBlock(block: number, w: WantBlock): Promise<void> {
    const { kernel } = this.deps;
    const started = process.hrtime.bigint();
    const ops: RedirectOp[] = [];
    let setup = false;
    let b = this.blocks.get(block);
    if (w.remote !== null || !b) {
      const vxvIndex = await kernel.ifindex(w.vxv);
      if (vxvIndex === null) {
        this.blocks.delete(block);
        return;
      }
      if (!b || b.vxvIndex !== vxvIndex) {
        // A replaced device's block may still hold entries: the setup below empties it.
        const stale = b?.built === true;
        b = { lnet: w.lnet, vxv: w.vxv, vxvIndex, built: false, ports: new Map(), local: new Map(), remote: new Map(), nodes: new Map() };
        setup = stale;
      }
    }
    const adds: RedirectOp[] = [];
    for (const p of [...b.ports.values()]) {
      const wp = w.ports.get(p.port);
      if (!wp || wp.mac !== p.mac || wp.ip !== p.ip || wp.ip6 !== p.ip6) ops.push(...this.dropPort(block, b, p));
    }
    if (w.remote !== null) {
      for (const [mac, node] of [...b.remote]) {
        if (w.remote.has(mac)) continue;
        ops.push({ op: 'del-remote', block, entry: { mac, dev: b.vxv, node } });
        this.release(b, `remote ${bucketOf(mac)}`, node);
        b.remote.delete(mac);
      }
    }
    for (const wp of w.ports.values()) {
      if (b.ports.has(wp.port) || b.local.has(wp.mac)) continue;
      if ((await kernel.ifindex(wp.port)) === null) continue;
      const node = this.take(b, `port ${bucketOf(wp.mac)}`);
      const lnode = this.take(b, `local ${bucketOf(wp.mac)}`);
      if (node === null || lnode === null) continue;
      const p: Port = { ...wp, node };
      b.ports.set(p.port, p);
      b.local.set(p.mac, { port: p.port, node: lnode });
      adds.push({ op: 'attach', block, dev: p.port }, { op: 'add-port', block, entry: p }, { op: 'add-local', block, entry: { mac: p.mac, dev: p.port, node: lnode } });
    }
    for (const mac of w.remote ?? []) {
      if (b.remote.has(mac)) continue;
      const node = this.take(b, `remote ${bucketOf(mac)}`);
      if (node === null) continue;
      b.remote.set(mac, node);
      adds.push({ op: 'add-remote', block, entry: { mac, dev: b.vxv, node } });
    }
    // A new block has nothing to take away: its setup (emptying what a replaced device left) goes first.
    if (setup || (!b.built && adds.length > 0)) ops.unshift({ op: 'setup', block, vxv: w.vxv });
    ops.push(...adds);
    if (ops.length === 0) {
      this.blocks.set(block, b);
      return;
    }
    b.built = true;
    // Dropped from the map first: if the batch fails half-way, the next pass starts over.
    this.blocks.delete(block);
    if (w.remote === null && (await kernel.ifindex(w.vxv)) !== b.vxvIndex) {
      // Only the ports were looked at, and the device was replaced meanwhile: the next pass
      // rebuilds the block in full (a block not in the map is always built in full).
      void this.sync(w.lnet);
      return;
    }
    await kernel.apply(ops);
    this.blocks.set(block, b);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    this.deps.log.info({ lnet: w.lnet, dev: w.vxv, changes: ops.length, ms: Math.round(ms * 100) / 100, ports: b.ports.size, remote: b.remote.size }, 'redirect entries synced');
  }

  private dropPort(block: number, b: Block, p: Port): RedirectOp[] {
    const ops: RedirectOp[] = [{ op: 'del-port', block, entry: p }];
    this.release(b, `port ${bucketOf(p.mac)}`, p.node);
    b.ports.delete(p.port);
    const l = b.local.get(p.mac);
    if (l && l.port === p.port) {
      ops.push({ op: 'del-local', block, entry: { mac: p.mac, dev: p.port, node: l.node } });
      this.release(b, `local ${bucketOf(p.mac)}`, l.node);
      b.local.delete(p.mac);
    }
    return ops;
  }

  private take(b: Block, table: string): number | null {
    let used = b.nodes.get(table);
    if (!used) b.nodes.set(table, (used = new Set()));
    const n = freeNode(used);
    if (n !== null) used.add(n);
    return n;
  }

  private release(b: Block, table: string, node: number): void {
    b.nodes.get(table)?.delete(node);
  }
}

/** Pure: every address a set of policy elements polices (the policed sets, both families). */
export function policedAddresses(sets: { policedIn: string[]; policedOut: string[]; policedIn6: string[]; policedOut6: string[] }): Set<string> {
  return new Set([...sets.policedIn, ...sets.policedOut, ...sets.policedIn6, ...sets.policedOut6].map((a) => bare(a)));
}
