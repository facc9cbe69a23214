// Group commit for address records: while one batch of create-if-absent writes is on its way to
// the store, the ones asked for meanwhile wait and go together in the next batch (one etcd
// transaction, Store.createEach). Alone, a write goes after one turn of the event loop, so
// nothing waits at low load; under a burst, one round trip carries many allocations (issue 13:
// 3 hosts × 1000 concurrent RequestAddress were CPU-bound on one gRPC transaction each, and a
// transaction costs the driver 0.7–2 ms of CPU in grpc-js whatever its size: the bigger the
// batch, the cheaper each address).
//
// Every address keeps its own key, created only if absent, exactly as before: the layout, what
// an older vxnet on another host sees, and the no-duplicate rule do not change.
import type { Store } from '../store/types';

/** etcd refuses transactions of more than 128 operations (--max-txn-ops); the else branch has as many. */
export const MAX_BATCH = 64;

/**
 * How long a batch may wait for the callers just answered to ask again (see drain). A transaction
 * costs the driver the same CPU whether it carries 1 address or 64; a round trip is 1–3 ms, but
 * under a burst on a busy machine the callers' next requests take longer to come back: with 3 ms
 * the 3 × 16 callers of bench/allocations.ts got 8–10 addresses per transaction, with 10 ms 12
 * (20 ms: 14, for up to 20 ms more on a request that arrives while a batch waits). Only a
 * request arriving during the wait can be held, and only until the batch is full or this ends.
 */
export const REFILL_WAIT_MS = 10;

interface Pending {
  key: string;
  value: string;
  resolve: (created: boolean) => void;
  reject: (err: unknown) => void;
}

export class GroupCreate {
  private queue: Pending[] = [];
  private running = false;
  /** drain() waiting for the queue to reach `want` entries (or for its timer). */
  private refill: { want: number; done: () => void } | null = null;

  /** refillWaitMs: REFILL_WAIT_MS; a test of the wait itself gives it room on a loaded machine. */
  constructor(
    private readonly store: Store,
    private readonly refillWaitMs = REFILL_WAIT_MS,
  ) {}

  /** Same answer as store.createIfAbsent(key, value). */
  create(key: string, value: string): Promise<boolean> {
    const each = this.store.createEach;
    if (!each) return this.store.createIfAbsent(key, value);
    return new Promise((resolve, reject) => {
      this.queue.push({ key, value, resolve, reject });
      if (this.refill && this.queue.length >= this.refill.want) this.refill.done();
      if (!this.running) {
        this.running = true;
        setImmediate(() => void this.drain());
      }
    });
  }

  /**
   * Resolves after the I/O callbacks already due have run: requests whose bytes have arrived get
   * parsed and queued before a batch is cut, so a burst fills the batch instead of sending the
   * first write alone. At low load it costs one turn of the event loop (well under 1 ms).
   */
  private settle(): Promise<void> {
    return new Promise((resolve) => setImmediate(resolve));
  }

  /** Resolves once `want` writes are queued, or after refillWaitMs. */
  private refilled(want: number): Promise<void> {
    if (this.queue.length >= want) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(), this.refillWaitMs);
      const done = (): void => {
        clearTimeout(timer);
        this.refill = null;
        resolve();
      };
      this.refill = { want, done };
    });
  }

  /** Up to MAX_BATCH waiting writes, one per key (etcd refuses a key twice in one transaction). */
  private nextBatch(): Pending[] {
    const keys = new Set<string>();
    const batch: Pending[] = [];
    const rest: Pending[] = [];
    for (const p of this.queue) {
      if (batch.length < MAX_BATCH && !keys.has(p.key)) {
        keys.add(p.key);
        batch.push(p);
      } else rest.push(p);
    }
    this.queue = rest;
    return batch;
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.nextBatch();
        try {
          const created = batch.length === 1
            ? [await this.store.createIfAbsent(batch[0].key, batch[0].value)]
            : await (this.store.createEach as NonNullable<Store['createEach']>).call(this.store, batch.map((p) => ({ key: p.key, value: p.value })));
          batch.forEach((p, i) => p.resolve(created[i]));
        } catch (err) {
          for (const p of batch) p.reject(err);
        }
        // Writes queued while this batch was out, or a batch of several, mean callers keep
        // several requests in flight (a burst): those just answered are likely to ask again at
        // once, so the next batch waits briefly for them (up to as many as were out) instead of
        // going half full. Stopping when the queue was empty split a burst of 16 callers into
        // two batches per round trip, one of the first few to come back and one of the rest
        // (issue 13: 8–10 addresses per transaction on average instead of 16). A lone caller
        // (a batch of one, nothing queued) never waits.
        if (this.queue.length > 0 || batch.length > 1) await this.refilled(Math.min(MAX_BATCH, this.queue.length + batch.length));
      }
    } finally {
      this.running = false;
    }
  }
}
