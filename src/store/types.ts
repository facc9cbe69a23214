// The one interface between vxnet's domain logic and its persistent state. Two implementations
// (embedded on-disk log, etcd) pass the same conformance suite (test/integration/store-*.test.ts).
// Every allocation in vxnet is a single createIfAbsent or compare-and-swap: nothing is held
// only in memory, and no lock is kept across calls.

export interface KeyValue {
  key: string;
  value: string;
  /** Revision of the store at the write that last changed this key. */
  modRevision: number;
}

export type WatchEvent =
  | { type: 'put'; kv: KeyValue }
  | { type: 'delete'; key: string; modRevision: number };

export interface Watcher {
  close(): void;
}

export interface WatchHandlers {
  onEvents(events: WatchEvent[], revision: number): void;
  /** The watch cannot resume from where it was (compaction, reconnect gap): resync fully. */
  onResync?(): void;
}

export interface Store {
  get(key: string): Promise<KeyValue | null>;
  /** Every key that starts with prefix, sorted by key. */
  list(prefix: string): Promise<KeyValue[]>;
  /** Writes key only if it does not exist. false: someone else has it. */
  createIfAbsent(key: string, value: string, opts?: { lease?: string }): Promise<boolean>;
  /**
   * Several createIfAbsent in one round trip, where the store can (etcd: one transaction per
   * try); the same answers, in order, as one createIfAbsent each. Optional: callers fall back to
   * createIfAbsent one by one.
   */
  createEach?(entries: Array<{ key: string; value: string }>): Promise<boolean[]>;
  /**
   * Writes key only if its modRevision is still `modRevision` (0 = key absent). The key keeps the
   * lease it has unless `opts.lease` names one this store granted: then it moves to that lease in
   * the same write (watchers see a put, never a delete).
   */
  compareAndSwap(key: string, value: string, modRevision: number, opts?: { lease?: string }): Promise<boolean>;
  /** Deletes key (only if its modRevision matches, when given). false: no such key, or it changed. */
  delete(key: string, modRevision?: number): Promise<boolean>;
  /** The store's current revision. */
  revision(): Promise<number>;
  /** Events for keys under prefix, from `fromRevision` (exclusive) on. */
  watch(prefix: string, fromRevision: number, handlers: WatchHandlers): Watcher;
  /** A lease that expires ttlSeconds after the last keep-alive; keys written with it go with it. */
  grantLease?(ttlSeconds: number): Promise<string>;
  close(): Promise<void>;
}
