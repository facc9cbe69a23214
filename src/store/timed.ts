// A Store that reports how long each call took, wrapped around the real one by the daemon.
// Every plugin call waits on the store (an etcd round trip across hosts), so its latency is the
// first thing to look at when `docker run` is slow; the implementations stay unaware of it.
import type { Store } from './types';

export type StoreOp = 'get' | 'list' | 'createIfAbsent' | 'createEach' | 'compareAndSwap' | 'delete' | 'revision' | 'grantLease';

/** Told once per finished call; `ok` is false when the call rejected (a `false` answer is ok). */
export type StoreCallObserver = (op: StoreOp, seconds: number, ok: boolean) => void;

export function timedStore(inner: Store, observe: StoreCallObserver): Store {
  async function timed<T>(op: StoreOp, call: () => Promise<T>): Promise<T> {
    const started = process.hrtime.bigint();
    let ok = false;
    try {
      const result = await call();
      ok = true;
      return result;
    } finally {
      observe(op, Number(process.hrtime.bigint() - started) / 1e9, ok);
    }
  }
  const wrapped: Store = {
    get: (key) => timed('get', () => inner.get(key)),
    list: (prefix) => timed('list', () => inner.list(prefix)),
    createIfAbsent: (key, value, opts) => timed('createIfAbsent', () => inner.createIfAbsent(key, value, opts)),
    compareAndSwap: (key, value, rev, opts) => timed('compareAndSwap', () => inner.compareAndSwap(key, value, rev, opts)),
    delete: (key, rev) => timed('delete', () => inner.delete(key, rev)),
    revision: () => timed('revision', () => inner.revision()),
    // A watch is one long-lived stream, not a call with a latency.
    watch: (prefix, fromRevision, handlers) => inner.watch(prefix, fromRevision, handlers),
    close: () => inner.close(),
  };
  const each = inner.createEach?.bind(inner);
  if (each) wrapped.createEach = (entries) => timed('createEach', () => each(entries));
  const grant = inner.grantLease?.bind(inner);
  // Only a store that can hold leases may look like one: registerHost checks for the method.
  if (grant) wrapped.grantLease = (ttl) => timed('grantLease', () => grant(ttl));
  return wrapped;
}
