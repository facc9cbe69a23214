// The Store over etcd v3 (etcd3 client), for networks shared by several hosts.
//
// Keys arrive absolute: vxnet's Keys class adds the cluster prefix, the store never does.
//
// Time bound. A plugin call that hangs hangs `docker run`, so every call carries one absolute
// deadline (callTimeoutMs) and fails with VXNET_ERR_STORE when it passes. With one endpoint a
// call also waits for a connection up to that deadline (gRPC waitForReady), so a call made while
// etcd restarts is sent once it is back.
//
// No blind retries. etcd3 retries every "recoverable" error three times by default; a retried
// transaction whose reply was lost would find its own write and report "taken" (an address
// reserved for nobody). So the client's retry policy is off and retries happen here, within the
// call's deadline: reads are simply sent again; a write whose attempt failed in transport (the
// member died, the connection dropped: applied or not, nobody knows) is sent again guarded by
// its own condition (create-if-absent, mod revision), which can only apply once, and a refused
// retry is then checked against what the key holds: if it holds what we wrote (or is gone, for a
// delete), an earlier attempt landed and the write succeeded. With several endpoints a call to a
// member that is down fails at once (no waitForReady), and MemberChoice skips that member for
// MEMBER_PAUSE_MS, so the retry goes to another member: one member down fails no call.
//
// Watches resume from the last revision they delivered (not etcd3's own resume point, which
// follows response headers and can run ahead of events during a catch-up), after checking that
// etcd still has that history: if it was compacted, or etcd came back with a shorter history
// (a new data directory), handlers.onResync() is called and the watch goes on from the current
// revision.
//
// Leases. grantLease() returns a handle that stays valid for the life of the store. etcd3 keeps
// the lease alive; if it is lost anyway (etcd unreachable for longer than the TTL), the store
// grants a new one and writes again every key it wrote with the old one (moving keys that still
// carry the old lease, creating those that expired), so a host's registration comes back by
// itself when etcd does. A key that someone else created in the meantime is left to them and
// reported through onError. Closing the store stops the keep-alives without revoking: the keys
// go TTL seconds later, as after a crash.
import * as fs from 'node:fs';
import { InterceptingCall, type Interceptor } from '@grpc/grpc-js';
import { ExponentialBackoff, isBrokenCircuitError, noop } from 'cockatiel';
import {
  ClientClosedError,
  Etcd3,
  EtcdLeaseInvalidError,
  GRPCDeadlineExceededError,
  GRPCOutOfRangeError,
  GRPCUnavailableError,
  isRecoverableError,
} from 'etcd3';
import type { CallOptionsFactory, IOptions, IKeyValue, IWatchResponse, Lease, Watcher as EtcdWatcher } from 'etcd3';
import { causeText, VxnetError, vxError } from '../errors';
import { MemberChoice } from './member-choice';
import type { KeyValue, Store, WatchEvent, WatchHandlers, Watcher } from './types';
import { WatchFanout } from './watch-fanout';

/** Default bound on every store call. */
const CALL_TIMEOUT_MS = 5000;
/** Pause between attempts of one call, and the longest one attempt may take. */
const RETRY_PAUSE_MS = 100;
const ATTEMPT_MS = 2000;
/** A watch or lease that lost etcd tries again after this, doubling up to the cap. */
const RECONNECT_FIRST_MS = 250;
const RECONNECT_MAX_MS = 5000;
/** A member that could not be reached is skipped this long (several endpoints only). */
const MEMBER_PAUSE_MS = 2000;
/** gRPC pings on open streams, to notice a peer that stopped answering (etcd allows ≥ 5 s). */
const KEEPALIVE_MS = 10000;
const KEEPALIVE_TIMEOUT_MS = 5000;
/** gRPC channel reconnect backoff: its default grows to 120 s, longer than any call may wait. */
const RECONNECT_BACKOFF_MAX_MS = 1000;

export interface EtcdStoreOptions {
  /** http(s)://host:port of the members. */
  endpoints: string[];
  /**
   * vxnet's key prefix. Never added to keys (they arrive absolute); the store only reads this
   * one key to learn the revision and to check at open that etcd answers.
   */
  prefix?: string;
  /** PEM files for TLS: CA that signed the members' certificates; client cert and key (mutual TLS). */
  ca?: string;
  cert?: string;
  key?: string;
  /** open() fails if etcd has not answered within this (default: callTimeoutMs). */
  dialTimeoutMs?: number;
  /** Every call fails within this when etcd does not answer (default 5000). */
  callTimeoutMs?: number;
  /** Problems the store handled itself (a bad watch event, a lost watch or lease). */
  onError?: (err: VxnetError) => void;
}

interface LeasedKey {
  value: string;
  /** The etcd lease the key was last written with. */
  etcdLease: string;
}

interface LeaseEntry {
  handle: string;
  ttl: number;
  lease: Lease | null;
  etcdLease: string;
  keys: Map<string, LeasedKey>;
}

export class EtcdStore implements Store {
  private closed = false;
  private readonly watches = new Set<EtcdWatch>();
  private readonly fanout = new WatchFanout(
    (prefix, rev, handlers) => this.openWatch(prefix, rev, handlers),
    (prefix, err) => this.report(vxError('VXNET_ERR_STORE', `watch handler for ${prefix} failed: ${causeText(err)}`, err)),
  );
  private readonly leases = new Map<string, LeaseEntry>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly probeKey: string;

  private constructor(
    readonly client: Etcd3,
    private readonly opts: EtcdStoreOptions,
    readonly callTimeoutMs: number,
  ) {
    this.probeKey = opts.prefix ?? '/';
  }

  static async open(opts: EtcdStoreOptions): Promise<EtcdStore> {
    if (opts.endpoints.length === 0) throw vxError('VXNET_ERR_STORE', 'no etcd endpoints given');
    const callTimeoutMs = opts.callTimeoutMs ?? CALL_TIMEOUT_MS;
    const client = new Etcd3(clientOptions(opts, callTimeoutMs));
    const store = new EtcdStore(client, opts, callTimeoutMs);
    try {
      await store.read('reach', opts.endpoints.join(','), (o) => client.get(store.probeKey).options(o).exec(), opts.dialTimeoutMs ?? callTimeoutMs);
    } catch (err) {
      client.close();
      throw err;
    }
    return store;
  }

  async get(key: string): Promise<KeyValue | null> {
    return this.read('read', key, (o) => this.getWith(key, o));
  }

  private async getWith(key: string, o: { deadline: number }): Promise<KeyValue | null> {
    const res = await this.client.get(key).options(o).exec();
    return res.kvs.length > 0 ? toKeyValue(res.kvs[0]) : null;
  }

  async list(prefix: string): Promise<KeyValue[]> {
    const res = await this.read('list', prefix, (o) => this.client.getAll().prefix(prefix).sort('Key', 'Ascend').options(o).exec());
    return res.kvs.map(toKeyValue);
  }

  async createIfAbsent(key: string, value: string, opts?: { lease?: string }): Promise<boolean> {
    const entry = opts?.lease !== undefined ? this.leaseEntry(opts.lease, key) : null;
    const etcdLease = entry?.etcdLease;
    const created = await this.write(
      'create',
      key,
      async (o) => {
        const put = this.client.put(key).value(value);
        if (etcdLease !== undefined) put.lease(etcdLease);
        return (await this.client.if(key, 'Create', '==', 0).then(put).options(o).commit()).succeeded;
      },
      async (o) => (await this.getWith(key, o))?.value === value,
    );
    if (created && entry && etcdLease !== undefined) entry.keys.set(key, { value, etcdLease });
    return created;
  }

  /**
   * All the creates in one transaction: it applies all of them or none. When one key exists the
   * else branch reads every key at that same revision: an existing key is answered false (or
   * true when it holds our own value and an earlier attempt may have landed), and the keys that
   * were free go again. Each round settles at least one key, so it ends.
   */
  async createEach(entries: Array<{ key: string; value: string }>): Promise<boolean[]> {
    const out = entries.map(() => false);
    let todo = entries.map((_, i) => i);
    while (todo.length > 0) {
      const batch = todo;
      const first = entries[batch[0]].key;
      const answered = await this.retrying('create', batch.length > 1 ? `${first} (and ${batch.length - 1} more)` : first, this.callTimeoutMs, async (o, unsure) => {
        let cmp = this.client.if(first, 'Create', '==', 0);
        for (const i of batch.slice(1)) cmp = cmp.and(entries[i].key, 'Create', '==', 0);
        const res = await cmp
          .then(...batch.map((i) => this.client.put(entries[i].key).value(entries[i].value)))
          .else(...batch.map((i) => this.client.get(entries[i].key)))
          .options(o)
          .commit();
        if (res.succeeded) return batch.map(() => true as boolean | null);
        return batch.map((i, j): boolean | null => {
          const kv = res.responses[j]?.response_range?.kvs?.[0];
          if (!kv) return null; // free: try again
          return unsure && kv.value.toString() === entries[i].value;
        });
      });
      todo = [];
      answered.forEach((a, j) => {
        if (a === null) todo.push(batch[j]);
        else out[batch[j]] = a;
      });
    }
    return out;
  }

  async compareAndSwap(key: string, value: string, modRevision: number, opts?: { lease?: string }): Promise<boolean> {
    const entry = opts?.lease !== undefined ? this.leaseEntry(opts.lease, key) : null;
    const etcdLease = entry?.etcdLease;
    const swapped = await this.write(
      'update',
      key,
      async (o) => {
        const put = this.client.put(key).value(value);
        if (etcdLease !== undefined) put.lease(etcdLease);
        // ignore_lease: a key written under a lease keeps it (a plain put would detach it).
        else if (modRevision !== 0) put.ignoreLease();
        const txn = modRevision === 0 ? this.client.if(key, 'Create', '==', 0).then(put) : this.client.if(key, 'Mod', '==', modRevision).then(put);
        return (await txn.options(o).commit()).succeeded;
      },
      async (o) => {
        const now = await this.getWith(key, o);
        return now !== null && now.value === value && now.modRevision > modRevision;
      },
    );
    if (swapped) {
      for (const e of this.leases.values()) {
        if (entry && e !== entry) e.keys.delete(key);
        const k = e.keys.get(key);
        if (k) k.value = value;
      }
      if (entry && etcdLease !== undefined) entry.keys.set(key, { value, etcdLease });
    }
    return swapped;
  }

  async delete(key: string, modRevision?: number): Promise<boolean> {
    const deleted = await this.write(
      'delete',
      key,
      async (o) => {
        if (modRevision === undefined) return Number((await this.client.delete().key(key).options(o).exec()).deleted) > 0;
        const res = await this.client.if(key, 'Mod', '==', modRevision).then(this.client.delete().key(key)).options(o).commit();
        return res.succeeded && Number(res.responses[0]?.response_delete_range?.deleted ?? 0) > 0;
      },
      async (o) => (await this.getWith(key, o)) === null,
    );
    if (deleted) for (const e of this.leases.values()) e.keys.delete(key);
    return deleted;
  }

  async revision(): Promise<number> {
    const res = await this.read('read the revision at', this.probeKey, (o) => this.client.get(this.probeKey).options(o).exec());
    return Number(res.header.revision);
  }

  /** true when etcd no longer has the history at `rev` (it was compacted). rev ≤ current revision. */
  async isCompacted(rev: number): Promise<boolean> {
    try {
      await this.read('read history of', this.probeKey, (o) => this.client.get(this.probeKey).revision(rev).options(o).exec());
      return false;
    } catch (err) {
      // etcd answers OutOfRange for both "compacted" and "future revision"; the caller rules out the second.
      if (err instanceof VxnetError && err.cause instanceof GRPCOutOfRangeError) return true;
      throw err;
    }
  }

  /** Watchers of one prefix share an etcd watch where their revisions allow (watch-fanout.ts). */
  watch(prefix: string, fromRevision: number, handlers: WatchHandlers): Watcher {
    if (this.closed) throw vxError('VXNET_ERR_STORE', `could not watch ${prefix} in etcd: the store is closed`);
    return this.fanout.watch(prefix, fromRevision, handlers);
  }

  /** etcd watches open now (watchers of one prefix share one: tests). */
  watchCount(): number {
    return this.watches.size;
  }

  private openWatch(prefix: string, fromRevision: number, handlers: WatchHandlers): Watcher {
    const w = new EtcdWatch(this, prefix, fromRevision, handlers);
    this.watches.add(w);
    w.start();
    return { close: () => this.unwatch(w) };
  }

  async grantLease(ttlSeconds: number): Promise<string> {
    const { lease, id: etcdLease } = await this.newLease(ttlSeconds, 'grant a lease for');
    const entry: LeaseEntry = { handle: etcdLease, ttl: ttlSeconds, lease, etcdLease, keys: new Map() };
    this.leases.set(entry.handle, entry);
    this.followLease(entry, lease);
    return entry.handle;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of [...this.watches]) this.unwatch(w);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const e of this.leases.values()) e.lease?.release();
    this.leases.clear();
    this.client.close();
  }

  // ---- internals shared with EtcdWatch -------------------------------------------------------

  report(err: VxnetError): void {
    if (this.closed) return;
    try {
      this.opts.onError?.(err);
    } catch {
      // a failing error callback must not take the store down
    }
  }

  isClosed(): boolean {
    return this.closed;
  }

  /** setTimeout that close() cancels. */
  later(ms: number, fn: () => void): void {
    if (this.closed) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.closed) fn();
    }, ms);
    this.timers.add(t);
  }

  private unwatch(w: EtcdWatch): void {
    this.watches.delete(w);
    w.close();
  }

  /** A read: sent again after a transport failure, since sending it twice is harmless. */
  private read<T>(op: string, key: string, call: (o: { deadline: number }) => Promise<T>, timeoutMs = this.callTimeoutMs): Promise<T> {
    return this.retrying(op, key, timeoutMs, (o) => call(o));
  }

  /**
   * A conditional write (see the header): `attempt` says whether its condition held; after a
   * failure that may have reached etcd, a refused retry asks `landed` whether the key shows an
   * earlier attempt's effect.
   */
  private write(
    op: string,
    key: string,
    attempt: (o: { deadline: number }) => Promise<boolean>,
    landed: (o: { deadline: number }) => Promise<boolean>,
  ): Promise<boolean> {
    return this.retrying(op, key, this.callTimeoutMs, async (o, unsure) => {
      const ok = await attempt(o);
      return ok || !unsure ? ok : landed(o);
    });
  }

  /**
   * Runs `call` until it answers or the deadline passes. Each attempt gets at most ATTEMPT_MS:
   * a member whose leader died holds a proposal until etcd's own request timeout (longer than
   * ours), and another member answers at once. `unsure` is true once an attempt failed in a way
   * that may have reached etcd.
   */
  private async retrying<T>(
    op: string,
    key: string,
    timeoutMs: number,
    call: (o: { deadline: number }, unsure: boolean) => Promise<T>,
  ): Promise<T> {
    this.assertOpen(op, key);
    const deadline = Date.now() + timeoutMs;
    let unsure = false;
    for (;;) {
      try {
        return await call({ deadline: Math.min(deadline, Date.now() + ATTEMPT_MS) }, unsure);
      } catch (err) {
        if (this.closed || !retryable(err) || Date.now() + RETRY_PAUSE_MS >= deadline) throw this.storeError(op, key, err, timeoutMs);
        unsure ||= !isBrokenCircuitError(err);
      }
      await sleep(RETRY_PAUSE_MS);
    }
  }

  private assertOpen(op: string, key: string): void {
    if (this.closed) throw vxError('VXNET_ERR_STORE', `could not ${op} ${key} in etcd: the store is closed`);
  }

  storeError(op: string, key: string, err: unknown, timeoutMs = this.callTimeoutMs): VxnetError {
    return vxError('VXNET_ERR_STORE', `could not ${op} ${key} in etcd: ${explain(err, timeoutMs, this.opts.endpoints)}`, err);
  }

  private leaseEntry(handle: string, key: string): LeaseEntry {
    const e = this.leases.get(handle);
    if (!e) throw vxError('VXNET_ERR_STORE', `could not create ${key} in etcd: lease ${handle} was not granted by this store`);
    return e;
  }

  /** Starts granting a lease; the grant itself is awaited through lease.grant(). */
  private async newLease(ttl: number, op: string): Promise<{ lease: Lease; id: string }> {
    this.assertOpen(op, `${ttl}s`);
    const lease = this.client.lease(ttl, { deadline: Date.now() + this.callTimeoutMs });
    try {
      return { lease, id: await lease.grant() };
    } catch (err) {
      lease.release();
      throw this.storeError(op, `${ttl}s`, err);
    }
  }

  private followLease(entry: LeaseEntry, lease: Lease): void {
    lease.on('lost', (err: Error) => {
      if (this.closed || entry.lease !== lease) return;
      entry.lease = null;
      this.report(
        vxError(
          'VXNET_ERR_STORE',
          `lease ${entry.handle} (etcd lease ${entry.etcdLease}) was lost: ${explain(err, this.callTimeoutMs, this.opts.endpoints)}; ` +
            `granting a new one and writing its ${entry.keys.size} key(s) again`,
          err,
        ),
      );
      this.regrant(entry, RECONNECT_FIRST_MS);
    });
  }

  /** Grants the entry a new etcd lease, retrying until etcd answers, then rewrites its keys. */
  private regrant(entry: LeaseEntry, delayMs: number): void {
    this.newLease(entry.ttl, `grant a new lease for ${entry.handle}, ttl`).then(
      ({ lease, id }) => {
        if (this.closed) return lease.release();
        entry.lease = lease;
        entry.etcdLease = id;
        this.followLease(entry, lease);
        this.rewriteAll(entry, lease, RECONNECT_FIRST_MS);
      },
      (err: unknown) => {
        this.report(err as VxnetError);
        this.later(delayMs, () => this.regrant(entry, Math.min(delayMs * 2, RECONNECT_MAX_MS)));
      },
    );
  }

  /** Rewrites every key not yet under the entry's lease; on failure tries again (the lease itself is fine). */
  private rewriteAll(entry: LeaseEntry, lease: Lease, delayMs: number): void {
    const run = async (): Promise<void> => {
      for (const [key, k] of [...entry.keys]) {
        if (entry.lease !== lease) return; // lost again: the next regrant redoes everything
        // skip keys deleted or already moved meanwhile
        if (entry.keys.get(key) === k && k.etcdLease !== entry.etcdLease) await this.rewrite(entry, key, k);
      }
    };
    run().catch((err: unknown) => {
      this.report(err instanceof VxnetError ? err : this.storeError('write again the keys of lease', entry.handle, err));
      if (entry.lease === lease) this.later(delayMs, () => this.rewriteAll(entry, lease, Math.min(delayMs * 2, RECONNECT_MAX_MS)));
    });
  }

  /** Puts a leased key back under the entry's current lease, unless someone else owns it now. */
  private async rewrite(entry: LeaseEntry, key: string, k: LeasedKey): Promise<void> {
    const newLease = entry.etcdLease;
    const put = (): ReturnType<Etcd3['put']> => this.client.put(key).value(k.value).lease(newLease);
    const underNewLease = async (o: { deadline: number }): Promise<boolean> => {
      const kv = (await this.client.get(key).options(o).exec()).kvs[0];
      return kv !== undefined && kv.lease === newLease && kv.value.toString() === k.value;
    };
    const ok =
      (await this.write('move to the new lease', key, async (o) => (await this.client.if(key, 'Lease', '==', k.etcdLease).then(put()).options(o).commit()).succeeded, underNewLease)) ||
      (await this.write('write again', key, async (o) => (await this.client.if(key, 'Create', '==', 0).then(put()).options(o).commit()).succeeded, underNewLease));
    if (ok) {
      k.etcdLease = newLease;
      return;
    }
    entry.keys.delete(key);
    this.report(vxError('VXNET_ERR_STORE_CONFLICT', `could not write ${key} again under lease ${entry.handle}: another writer created it meanwhile`));
  }
}

/**
 * One Store watch over a chain of etcd3 watchers: each lives for one connection; when it ends
 * (disconnect, cancel by etcd) the next starts from the last delivered revision.
 */
class EtcdWatch {
  private current: EtcdWatcher | null = null;
  private closed = false;
  private delayMs = RECONNECT_FIRST_MS;
  private failing = false;

  constructor(
    private readonly store: EtcdStore,
    private readonly prefix: string,
    /** Every event up to this revision has been delivered. */
    private lastRev: number,
    private readonly handlers: WatchHandlers,
  ) {}

  start(): void {
    void this.connect();
  }

  close(): void {
    this.closed = true;
    const w = this.current;
    this.current = null;
    if (w) void w.cancel().catch(() => undefined);
  }

  /** Checks that etcd still has our history, then watches from lastRev + 1. */
  private async connect(): Promise<void> {
    if (this.closed || this.store.isClosed()) return;
    try {
      const cur = await this.store.revision();
      if (this.closed) return;
      if (this.lastRev > cur) {
        this.resync(cur, `etcd's revision ${cur} is behind this watch's ${this.lastRev} (etcd lost its data?)`);
      } else if (this.lastRev < cur && (await this.store.isCompacted(this.lastRev + 1))) {
        this.resync(cur, `etcd compacted its history past revision ${this.lastRev + 1}`);
      }
      if (this.closed) return;
      this.attach();
    } catch (err) {
      this.retry(err);
    }
  }

  private attach(): void {
    const w = this.store.client
      .watch()
      .prefix(this.prefix)
      .startRevision(String(this.lastRev + 1))
      .watcher();
    this.current = w;
    w.on('connected', () => {
      if (this.current !== w) return;
      this.failing = false;
      this.delayMs = RECONNECT_FIRST_MS;
    });
    w.on('data', (res: IWatchResponse) => {
      if (this.current === w && !this.closed) this.deliver(res);
    });
    // etcd cancelled the watch (compaction, or anything else): the manager has dropped it already.
    w.on('error', (err: Error) => {
      if (this.current !== w) return;
      this.current = null;
      this.retry(err);
    });
    // The stream broke: take the watcher out (etcd3 would resume it from its own idea of where we are).
    w.on('disconnected', (err: Error) => {
      if (this.current !== w) return;
      this.current = null;
      void w.cancel().catch(() => undefined);
      this.retry(err);
    });
  }

  private deliver(res: IWatchResponse): void {
    const events: WatchEvent[] = [];
    let maxRev = this.lastRev;
    for (const ev of res.events ?? []) {
      try {
        const rev = Number(ev.kv.mod_revision);
        if (!(rev > this.lastRev)) continue; // replayed after a reconnect: already delivered
        const key = ev.kv.key.toString();
        if (ev.type === 'Put') events.push({ type: 'put', kv: { key, value: ev.kv.value.toString(), modRevision: rev } });
        else if (ev.type === 'Delete') events.push({ type: 'delete', key, modRevision: rev });
        else throw new Error(`unknown event type ${String(ev.type)}`);
        if (rev > maxRev) maxRev = rev;
      } catch (err) {
        this.store.report(vxError('VXNET_ERR_STORE', `could not read a watch event for ${this.prefix} from etcd: ${causeText(err)}`, err));
      }
    }
    // An empty response is a progress notification, sent only once the watch has caught up:
    // nothing at or below its header revision is still to come.
    if ((res.events ?? []).length === 0 && res.header) maxRev = Math.max(maxRev, Number(res.header.revision) || 0);
    this.lastRev = maxRev;
    if (events.length === 0) return;
    try {
      this.handlers.onEvents(events, this.lastRev);
    } catch (err) {
      this.store.report(vxError('VXNET_ERR_STORE', `watch handler for ${this.prefix} failed: ${causeText(err)}`, err));
    }
  }

  private resync(cur: number, why: string): void {
    this.store.report(vxError('VXNET_ERR_STORE', `watch of ${this.prefix} cannot resume: ${why}; resyncing from revision ${cur}`));
    this.lastRev = cur;
    try {
      this.handlers.onResync?.();
    } catch (err) {
      this.store.report(vxError('VXNET_ERR_STORE', `resync handler for ${this.prefix} failed: ${causeText(err)}`, err));
    }
  }

  private retry(err: unknown): void {
    if (this.closed || this.store.isClosed()) return;
    // Report the first failure of a streak, not every attempt while etcd is away.
    if (!this.failing) {
      this.failing = true;
      this.store.report(err instanceof VxnetError ? err : this.store.storeError('watch', this.prefix, err));
    }
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, RECONNECT_MAX_MS);
    this.store.later(delay, () => void this.connect());
  }
}

function clientOptions(opts: EtcdStoreOptions, callTimeoutMs: number): IOptions {
  // One member: wait for it (a restart is ridden out). Several: fail fast on a member that is
  // down, so its breaker opens and the next call goes to another one.
  const single = opts.endpoints.length === 1;
  const choice = new MemberChoice(opts.endpoints, MEMBER_PAUSE_MS, unreachable);
  const unary: CallOptionsFactory = (ctx) =>
    ctx.isStream ? {} : { deadline: Date.now() + callTimeoutMs, ...(single ? { interceptors: [waitForReady] } : {}) };
  const options: IOptions = {
    hosts: opts.endpoints,
    defaultCallOptions: unary,
    grpcOptions: {
      'grpc.keepalive_time_ms': KEEPALIVE_MS,
      'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
      'grpc.max_reconnect_backoff_ms': RECONNECT_BACKOFF_MAX_MS,
      'grpc.initial_reconnect_backoff_ms': RECONNECT_FIRST_MS,
    },
    faultHandling: {
      global: noop,
      host: single ? () => noop : (member) => choice.policy(member),
      // etcd3's own watch-stream reconnects: short, so no timer outlives close() for long.
      watchBackoff: new ExponentialBackoff({ initialDelay: RECONNECT_FIRST_MS, maxDelay: RECONNECT_MAX_MS }).next(),
    },
  };
  if (opts.ca || opts.cert || opts.key) {
    if (!opts.ca) throw vxError('VXNET_ERR_STORE', 'etcd TLS needs a CA file (ca) with the client certificate');
    if (Boolean(opts.cert) !== Boolean(opts.key)) throw vxError('VXNET_ERR_STORE', 'etcd TLS client authentication needs both cert and key');
    options.credentials = {
      rootCertificate: readPem(opts.ca, 'CA'),
      ...(opts.cert && opts.key ? { certChain: readPem(opts.cert, 'client certificate'), privateKey: readPem(opts.key, 'client key') } : {}),
    };
  }
  return options;
}

/** Unary calls wait for a connection (until their deadline) instead of failing at once. */
const waitForReady: Interceptor = (options, nextCall) =>
  new InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      const md = metadata.clone();
      md.setOptions({ waitForReady: true });
      next(md, listener);
    },
  });

function readPem(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw vxError('VXNET_ERR_STORE', `could not read etcd TLS ${what} ${file}: ${causeText(err)}`, err);
  }
}

/** The cause, in words an operator can act on, by the etcd3 error class. */
function explain(err: unknown, timeoutMs: number, endpoints: string[]): string {
  const text = causeText(err);
  if (err instanceof GRPCDeadlineExceededError) return `no answer from ${endpoints.join(',')} within ${timeoutMs} ms (${text})`;
  if (err instanceof GRPCUnavailableError) return `${endpoints.join(',')} unavailable (${text})`;
  if (err instanceof EtcdLeaseInvalidError) return `lease expired or revoked (${text})`;
  if (err instanceof ClientClosedError) return 'the store is closed';
  if (isBrokenCircuitError(err)) return `every endpoint failed recently (${endpoints.join(',')})`;
  return text;
}

function toKeyValue(kv: IKeyValue): KeyValue {
  return { key: kv.key.toString(), value: kv.value.toString(), modRevision: Number(kv.mod_revision) };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function recoverable(err: unknown): boolean {
  return typeof err === 'object' && err !== null && isRecoverableError(err as Error);
}

/** Worth another attempt within the call's deadline (possibly on another member). */
function retryable(err: unknown): boolean {
  return recoverable(err) || err instanceof GRPCDeadlineExceededError || isBrokenCircuitError(err);
}

/**
 * The member itself is unreachable (refused, reset, dropped), as opposed to a member that
 * answered "etcdserver: no leader" / "leader changed" while the cluster elects: those answers
 * come from every live member at once, and opening all their breakers would fail every call
 * for MEMBER_PAUSE_MS after the election is long over.
 */
function unreachable(err: Error): boolean {
  return isRecoverableError(err) && !/etcdserver:/.test(err.message);
}
