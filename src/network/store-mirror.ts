// An in-memory copy of some store keys, kept current by a watch, so that plugin calls can read
// records without a store round trip (over etcd each read costs a round trip; a `docker run`
// made ~20 of them). The store stays the truth: a key the mirror does not hold is read from the
// store by the caller, and every write still goes to the store with its condition.
//
// Ordering. The watch delivers events in revision order, starting at the revision the initial
// list was taken at, so it may replay events older than what the list or this process already
// knows. Each entry keeps the revision it was seen at and older events are ignored. Writes made
// by this process are noted at once (the caller does not wait for its own watch event), and
// the watch event of a write may arrive before or after the write's own reply:
// - a noted write has revision 0 until its watch event arrives. A delete event arriving before
//   that is older than the write (the watch is ordered, so a newer delete would come after the
//   write's own event): ignored. If the write's event came first (the entry already holds what
//   was written, with its revision), the note changes nothing; if a delete event came after
//   it, the key is gone again and the write is not cached at all.
// - a noted delete removes the entry and blocks puts for that key until the watch delivers a
//   delete: a put that is still queued in the watch is older and must not bring it back. If the
//   delete event came first, there is nothing left to wait for.
//
// What it may get wrong, and why that is safe: a missing entry costs one store read; a present
// entry is at most as old as the watch's lag (milliseconds), the same as any read of a replica.
import { createHash } from 'node:crypto';
import type { Logger } from '../log';
import type { KeyValue, Store, WatchEvent, Watcher } from '../store/types';

/** Delete events remembered: a write's reply trails its own watch event by far fewer. */
const RECENT_DELETES = 4096;

/**
 * What an entry keeps of the text written: its SHA-1, enough to tell our own write's watch event
 * from an older put of the key. The text itself was a second copy of every record in memory
 * (~0.9 KB per network across the two mirrors, ~220 bytes per endpoint of the cluster in the
 * policy engine's; heap snapshot, bench:memory).
 */
function digest(raw: string): string {
  return createHash('sha1').update(raw).digest('base64');
}

interface Entry<T> {
  value: T;
  /** digest() of the text written. */
  sum: string;
  /** Store revision of the write; 0 = written by this process, its watch event not seen yet. */
  rev: number;
}

export interface MirrorDeps<T> {
  store: Store;
  /** Keys under these prefixes are mirrored. */
  prefixes: string[];
  /** The record of a key's value, or null to leave the key out (e.g. another host's endpoint). */
  parse(kv: KeyValue): T | null;
  log: Logger;
  /** Called after watch events or a (re)load changed what is held (e.g. to recompute derived state). */
  onChange?(): void;
  /**
   * Whether a change of one key (before/after: the record held, undefined when absent) can change
   * what onChange derives. Watch events that change only keys it says no to do not call onChange:
   * every host sees every endpoint event, and most of them are other hosts' (default: all count).
   */
  matters?(key: string, before: T | undefined, after: T | undefined): boolean;
  /**
   * Called on every change of what is held, whatever its source (watch, noted write or delete,
   * reload), before onChange: lets an owner keep an index of the records in step.
   */
  onEntry?(key: string, before: T | undefined, after: T | undefined): void;
}

export class StoreMirror<T> {
  private readonly entries = new Map<string, Entry<T>>();
  /** Deleted by this process, its delete event not seen yet. */
  private readonly pendingDeletes = new Set<string>();
  /**
   * Keys whose last watch event was a delete, newest last (bounded): tells a noted write or
   * delete whose event already came through from one whose event is still to come.
   */
  private readonly recentDeletes = new Set<string>();
  private watchers: Watcher[] = [];
  private ready = false;
  private closed = false;
  private loading: Promise<void> | null = null;

  constructor(private readonly deps: MirrorDeps<T>) {}

  private setEntry(key: string, e: Entry<T>): void {
    const before = this.entries.get(key)?.value;
    this.entries.set(key, e);
    this.deps.onEntry?.(key, before, e.value);
  }

  private deleteEntry(key: string): void {
    const before = this.entries.get(key);
    if (!before) return;
    this.entries.delete(key);
    this.deps.onEntry?.(key, before.value, undefined);
  }

  private clearEntries(): void {
    for (const key of [...this.entries.keys()]) this.deleteEntry(key);
  }

  /** Lists the prefixes, then follows them from that revision. Until then every get() misses. */
  async start(): Promise<void> {
    const rev = await this.load();
    for (const prefix of this.deps.prefixes) {
      this.watchers.push(
        this.deps.store.watch(prefix, rev, {
          onEvents: (events) => this.onEvents(events),
          onResync: () => void this.resync(),
        }),
      );
    }
  }

  close(): void {
    this.closed = true;
    this.ready = false;
    for (const w of this.watchers) w.close();
    this.watchers = [];
    this.clearEntries();
  }

  /**
   * Resolves once a reload in progress (after a watch resync) has finished; at once otherwise.
   * isReady() then says whether the mirror holds a full list.
   */
  async whenLoaded(): Promise<void> {
    if (this.loading) await this.loading;
  }

  isReady(): boolean {
    return this.ready;
  }

  /** The record, or undefined when the mirror does not know it (read the store then). */
  get(key: string): T | undefined {
    if (!this.ready) return undefined;
    return this.entries.get(key)?.value;
  }

  /** Every mirrored record whose key starts with prefix, or null when not ready (ask the store). */
  list(prefix: string): Array<{ key: string; value: T }> | null {
    if (!this.ready) return null;
    const out: Array<{ key: string; value: T }> = [];
    for (const [key, e] of this.entries) if (key.startsWith(prefix)) out.push({ key, value: e.value });
    return out;
  }

  /**
   * Calls fn for every mirrored record whose key starts with prefix, without building a list;
   * false when not ready (fn not called).
   */
  each(prefix: string, fn: (key: string, value: T) => void): boolean {
    if (!this.ready) return false;
    for (const [key, e] of this.entries) if (key.startsWith(prefix)) fn(key, e.value);
    return true;
  }

  /** This process wrote `raw` to key (the store accepted it). */
  noteWrite(key: string, raw: string): void {
    if (!this.covers(key)) return;
    this.pendingDeletes.delete(key);
    const cur = this.entries.get(key);
    const sum = digest(raw);
    if (cur && cur.rev !== 0 && cur.sum === sum) return; // its event came first
    if (this.recentDeletes.has(key)) {
      // Deleted after our write (its event came and went), or before it: either way the store
      // decides. Left out; the write's own event, if still to come, puts it back.
      this.deleteEntry(key);
      return;
    }
    const value = this.parseOrNull({ key, value: raw, modRevision: 0 });
    if (value === null) this.deleteEntry(key);
    else this.setEntry(key, { value, sum, rev: 0 });
  }

  /**
   * This process deleted key from the store (`deleted`), or found it gone. Only a delete that
   * happened has a watch event to wait for.
   */
  noteDelete(key: string, deleted: boolean): void {
    if (!this.covers(key)) return;
    const cur = this.entries.get(key);
    this.deleteEntry(key);
    if (deleted && !this.recentDeletes.has(key)) this.pendingDeletes.add(key);
    // Its watch event is then taken for this delete and reports nothing: onChange hears it now.
    // (A noted write needs no such call: its event still reports it, being newer than the entry.)
    if (cur && this.changedKey(key, cur.value, undefined)) this.deps.onChange?.();
  }

  /** For tests and status: how many records are held. */
  size(): number {
    return this.entries.size;
  }

  /** Applies watch events (exposed for unit tests; the watch calls it). */
  onEvents(events: WatchEvent[]): void {
    let changed = false;
    for (const ev of events) {
      if (ev.type === 'put') changed = this.applyPut(ev.kv) || changed;
      else changed = this.applyDelete(ev.key, ev.modRevision) || changed;
    }
    if (changed) this.deps.onChange?.();
  }

  /** The watch-side change of one key: whether onChange must hear of it. */
  private changedKey(key: string, before: T | undefined, after: T | undefined): boolean {
    if (before === undefined && after === undefined) return false;
    return this.deps.matters ? this.deps.matters(key, before, after) : true;
  }

  private applyPut(kv: KeyValue): boolean {
    if (this.pendingDeletes.has(kv.key)) return false; // older than our delete
    this.recentDeletes.delete(kv.key);
    const cur = this.entries.get(kv.key);
    let sum: string | undefined;
    if (cur) {
      if (cur.rev === 0 && cur.sum !== (sum = digest(kv.value))) return false; // older than our write
      if (cur.rev !== 0 && kv.modRevision <= cur.rev) return false; // replayed
    }
    const value = this.parseOrNull(kv);
    if (value === null) this.deleteEntry(kv.key);
    else this.setEntry(kv.key, { value, sum: sum ?? digest(kv.value), rev: kv.modRevision });
    return this.changedKey(kv.key, cur?.value, value ?? undefined);
  }

  private applyDelete(key: string, rev: number): boolean {
    this.rememberDelete(key);
    if (this.pendingDeletes.delete(key)) return false; // our own delete (the entry is already gone)
    const cur = this.entries.get(key);
    if (!cur) return false;
    if (cur.rev === 0 || rev < cur.rev) return false; // older than what we hold
    this.deleteEntry(key);
    return this.changedKey(key, cur.value, undefined);
  }

  private rememberDelete(key: string): void {
    this.recentDeletes.delete(key);
    this.recentDeletes.add(key);
    if (this.recentDeletes.size > RECENT_DELETES) this.recentDeletes.delete(this.recentDeletes.values().next().value as string);
  }

  private parseOrNull(kv: KeyValue): T | null {
    try {
      return this.deps.parse(kv);
    } catch (err) {
      this.deps.log.warn({ err, key: kv.key }, 'bad record left out of the mirror');
      return null;
    }
  }

  private covers(key: string): boolean {
    return this.deps.prefixes.some((p) => key.startsWith(p));
  }

  /** Full list at a revision; returns the revision to watch from. */
  private async load(): Promise<number> {
    const rev = await this.deps.store.revision();
    const fresh = new Map<string, Entry<T>>();
    const listed = new Set<string>();
    for (const prefix of this.deps.prefixes) {
      for (const kv of await this.deps.store.list(prefix)) {
        listed.add(kv.key);
        // Listed but deleted here meanwhile: the list predates our delete, its event will come.
        if (this.pendingDeletes.has(kv.key)) continue;
        const value = this.parseOrNull(kv);
        if (value !== null) fresh.set(kv.key, { value, sum: digest(kv.value), rev: kv.modRevision });
      }
    }
    // A delete the list already reflects has no event left to wait for.
    for (const key of this.pendingDeletes) if (!listed.has(key)) this.pendingDeletes.delete(key);
    // Writes noted while listing that the list did not see yet: their events follow.
    for (const [key, e] of this.entries) if (e.rev === 0 && !fresh.has(key)) fresh.set(key, e);
    this.clearEntries();
    for (const [k, e] of fresh) this.setEntry(k, e);
    this.ready = !this.closed;
    this.deps.onChange?.();
    return rev;
  }

  /** The watch lost history (compaction, a new etcd): serve from the store until reloaded. */
  private async resync(): Promise<void> {
    if (this.closed || this.loading) return;
    this.ready = false;
    this.deps.log.info({ prefixes: this.deps.prefixes }, 'store mirror resync');
    this.loading = this.load()
      .then(() => undefined)
      .catch((err: unknown) => this.deps.log.warn({ err }, 'store mirror resync failed; reads go to the store'))
      .finally(() => {
        this.loading = null;
      });
    await this.loading;
  }
}
