// Embedded store for a single host: the whole keyspace in memory, every write appended to a log
// on disk and fdatasync'ed before the caller hears "done".
//
// Why a log and not a JSON file rewritten per write: an append is the only write that can be
// torn by a crash, and a torn last line is recognisable (it does not parse) and dropped at load;
// a rewritten file needs write-temp-then-rename per allocation, which costs an fsync of the
// directory too. Every so often the log is folded into a snapshot (temp file + rename + dir
// fsync), after which the log restarts.
//
// Check-and-write happens synchronously inside one tick, so createIfAbsent/compareAndSwap are
// atomic against every other caller in this process; the data directory's lock keeps other
// processes out.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { vxError, causeText } from '../errors';
import { acquirePidLock, PidLock } from './pid-lock';
import type { KeyValue, Store, WatchEvent, WatchHandlers, Watcher } from './types';

const LOG_FILE = 'store.log';
const SNAPSHOT_FILE = 'store.snap';
const LOCK_FILE = 'store.lock';
/** Fold the log into a snapshot after this many records. */
const COMPACT_EVERY = 5000;
/** Watchers can resume from this many events back; older revisions force a resync. */
const HISTORY = 10000;

interface Entry {
  value: string;
  modRevision: number;
  lease?: string;
}

interface LogRecord {
  r: number;
  op: 'put' | 'del';
  k: string;
  v?: string;
  l?: string;
}

interface Snapshot {
  revision: number;
  entries: Array<[string, Entry]>;
}

interface WatchEntry {
  prefix: string;
  handlers: WatchHandlers;
}

export interface EmbeddedStoreOptions {
  dataDir: string;
  /** Records before the log is folded into a snapshot. */
  compactEvery?: number;
}

export class EmbeddedStore implements Store {
  private readonly entries = new Map<string, Entry>();
  private readonly history: WatchEvent[] = [];
  private readonly watchers = new Set<WatchEntry>();
  private readonly leaseTimers = new Map<string, { ttl: number; timer: NodeJS.Timeout }>();
  private rev = 0;
  private logFd = -1;
  private logRecords = 0;
  private closed = false;
  private leaseSeq = 0;

  private constructor(
    private readonly dir: string,
    private readonly lock: PidLock,
    private readonly compactEvery: number,
  ) {}

  static open(opts: EmbeddedStoreOptions): EmbeddedStore {
    try {
      fs.mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw vxError('VXNET_ERR_STORE', `could not create data directory ${opts.dataDir}: ${causeText(err)}`, err);
    }
    const lock = acquirePidLock(path.join(opts.dataDir, LOCK_FILE), 'embedded store');
    const store = new EmbeddedStore(opts.dataDir, lock, opts.compactEvery ?? COMPACT_EVERY);
    try {
      store.load();
    } catch (err) {
      lock.release();
      throw err;
    }
    return store;
  }

  private load(): void {
    const snapPath = path.join(this.dir, SNAPSHOT_FILE);
    if (fs.existsSync(snapPath)) {
      const snap = JSON.parse(fs.readFileSync(snapPath, 'utf8')) as Snapshot;
      this.rev = snap.revision;
      for (const [k, e] of snap.entries) this.entries.set(k, e);
    }
    const logPath = path.join(this.dir, LOG_FILE);
    if (fs.existsSync(logPath)) {
      const text = fs.readFileSync(logPath, 'utf8');
      let goodBytes = 0;
      for (const line of text.split('\n')) {
        if (line === '') break;
        let rec: LogRecord;
        try {
          rec = JSON.parse(line) as LogRecord;
        } catch {
          // A crash mid-append leaves one torn last line: drop it (the write was never acknowledged).
          break;
        }
        goodBytes += Buffer.byteLength(line) + 1;
        this.logRecords++;
        if (rec.r <= this.rev) continue;
        this.apply(rec);
      }
      if (goodBytes < Buffer.byteLength(text)) fs.truncateSync(logPath, goodBytes);
    }
    this.logFd = fs.openSync(logPath, 'a', 0o600);
    // Leases die with the process that held them.
    for (const [k, e] of [...this.entries]) {
      if (e.lease !== undefined) this.write({ op: 'del', k });
    }
  }

  private apply(rec: LogRecord): WatchEvent {
    this.rev = rec.r;
    if (rec.op === 'put') {
      const entry: Entry = { value: rec.v ?? '', modRevision: rec.r };
      if (rec.l !== undefined) entry.lease = rec.l;
      this.entries.set(rec.k, entry);
      return { type: 'put', kv: { key: rec.k, value: entry.value, modRevision: rec.r } };
    }
    this.entries.delete(rec.k);
    return { type: 'delete', key: rec.k, modRevision: rec.r };
  }

  private append(rec: LogRecord): void {
    fs.writeSync(this.logFd, JSON.stringify(rec) + '\n');
    this.logRecords++;
  }

  /** Applies one change durably, then tells the watchers. */
  private write(change: Omit<LogRecord, 'r'>): void {
    if (this.closed) throw vxError('VXNET_ERR_STORE', 'embedded store is closed');
    const rec: LogRecord = { r: this.rev + 1, ...change };
    try {
      this.append(rec);
      fs.fdatasyncSync(this.logFd);
    } catch (err) {
      throw vxError('VXNET_ERR_STORE', `could not write ${rec.k} to the embedded store: ${causeText(err)}`, err);
    }
    const ev = this.apply(rec);
    this.history.push(ev);
    if (this.history.length > HISTORY) this.history.splice(0, this.history.length - HISTORY);
    this.notify([ev]);
    if (this.logRecords >= this.compactEvery) this.compact();
  }

  private notify(events: WatchEvent[]): void {
    for (const w of this.watchers) {
      const mine = events.filter((e) => keyOf(e).startsWith(w.prefix));
      if (mine.length === 0) continue;
      // Watch callbacks run outside the writer's call stack, as they would with etcd.
      queueMicrotask(() => {
        if (this.watchers.has(w)) w.handlers.onEvents(mine, this.rev);
      });
    }
  }

  private compact(): void {
    const snapPath = path.join(this.dir, SNAPSHOT_FILE);
    const tmp = `${snapPath}.tmp`;
    const snap: Snapshot = { revision: this.rev, entries: [...this.entries] };
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeSync(fd, JSON.stringify(snap));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, snapPath);
    fsyncDir(this.dir);
    // Only after the snapshot is durable may the log it contains be dropped.
    fs.ftruncateSync(this.logFd, 0);
    this.logRecords = 0;
  }

  async get(key: string): Promise<KeyValue | null> {
    const e = this.entries.get(key);
    return e ? { key, value: e.value, modRevision: e.modRevision } : null;
  }

  async list(prefix: string): Promise<KeyValue[]> {
    const out: KeyValue[] = [];
    for (const [key, e] of this.entries) {
      if (key.startsWith(prefix)) out.push({ key, value: e.value, modRevision: e.modRevision });
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async createIfAbsent(key: string, value: string, opts?: { lease?: string }): Promise<boolean> {
    if (this.entries.has(key)) return false;
    this.write({ op: 'put', k: key, v: value, ...(opts?.lease ? { l: opts.lease } : {}) });
    return true;
  }

  async compareAndSwap(key: string, value: string, modRevision: number, opts?: { lease?: string }): Promise<boolean> {
    const cur = this.entries.get(key);
    if ((cur?.modRevision ?? 0) !== modRevision) return false;
    const lease = opts?.lease ?? cur?.lease;
    this.write({ op: 'put', k: key, v: value, ...(lease ? { l: lease } : {}) });
    return true;
  }

  async delete(key: string, modRevision?: number): Promise<boolean> {
    const cur = this.entries.get(key);
    if (!cur) return false;
    if (modRevision !== undefined && cur.modRevision !== modRevision) return false;
    this.write({ op: 'del', k: key });
    return true;
  }

  async revision(): Promise<number> {
    return this.rev;
  }

  watch(prefix: string, fromRevision: number, handlers: WatchHandlers): Watcher {
    const w: WatchEntry = { prefix, handlers };
    const oldest = this.history.length > 0 ? revOf(this.history[0]) : this.rev + 1;
    if (fromRevision < this.rev) {
      if (fromRevision + 1 < oldest) {
        queueMicrotask(() => handlers.onResync?.());
      } else {
        const missed = this.history.filter((e) => revOf(e) > fromRevision && keyOf(e).startsWith(prefix));
        if (missed.length > 0) queueMicrotask(() => handlers.onEvents(missed, this.rev));
      }
    }
    this.watchers.add(w);
    return { close: () => this.watchers.delete(w) };
  }

  async grantLease(ttlSeconds: number): Promise<string> {
    // A single host's lease only has to outlive this process: keys written with it are
    // dropped at the next open. The timer is unref'd so it never keeps the process alive.
    const id = `embedded-${process.pid}-${++this.leaseSeq}`;
    const timer = setInterval(() => undefined, ttlSeconds * 1000);
    timer.unref();
    this.leaseTimers.set(id, { ttl: ttlSeconds, timer });
    return id;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const { timer } of this.leaseTimers.values()) clearInterval(timer);
    this.watchers.clear();
    if (this.logFd >= 0) fs.closeSync(this.logFd);
    this.lock.release();
  }
}

function keyOf(e: WatchEvent): string {
  return e.type === 'put' ? e.kv.key : e.key;
}

function revOf(e: WatchEvent): number {
  return e.type === 'put' ? e.kv.modRevision : e.modRevision;
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
