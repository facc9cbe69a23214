// Kernel work off the main thread: veth pairs deleted, a gone endpoint's conntrack entries removed.
//
// Why a thread: the kernel does the whole RTM_DELLINK of a veth inside the sender's sendmsg()
// (unregistering both ends waits for RCU grace periods), ~20 ms here, and the `netlink`
// package calls sendmsg on node's only thread, so every other plugin call waited with it.
// Answering DeleteEndpoint before the delete finished therefore gained nothing (measured). A
// worker thread has its own event loop and its own netlink socket: DeleteEndpoint now hands the
// name over and answers at once. Nothing is lost if the driver dies first: the endpoint's
// record is already deleted, so the next reconcile removes the link as an orphan.
//
// The conntrack cleanup of a gone endpoint (conntrack.ts) is the same kind of work: the kernel
// walks its whole conntrack hash inside the dump's syscalls, 13-16 ms here, and measured on the
// main thread that was a 13-15 ms stall of its event loop per cleanup (DeleteEndpoint over etcd
// went from 4.2 to 16.5 ms p50, the store's reply waiting behind the walk). So it runs here too.
//
// A network's bridge is removed only after the reaper is idle (drain), so "network gone" still
// means "no vxnet link left" at the moment the call returns.
//
// The thread ends after a minute without a deletion and the next deletion starts it again:
// a worker isolate holds ~10 MB of RSS (73 → 84 MB measured with the thread started), while
// starting one costs the main thread 1–4 ms (~15 ms the first time, when its code is read),
// once per burst of deletions rather than the ~20 ms of every delete.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { FILTER_ABOVE } from './conntrack';
import { describeJob, runKernelJob, type KernelJob } from './kernel-jobs';

export interface JobRequest {
  id: number;
  job: KernelJob;
}

export interface JobResult {
  id: number;
  count?: number;
  error?: string;
}

/**
 * The compiled worker beside this file. Under ts-jest the sources run from src/, where there is
 * none: the build's copy in dist/ (the test command builds first) keeps the thread in the tests.
 */
const WORKER_JS = [
  path.join(__dirname, 'kernel-thread-worker.js'),
  path.join(__dirname, '..', '..', 'dist', 'src', 'dataplane', 'kernel-thread-worker.js'),
].find((f) => fs.existsSync(f));

interface Pending {
  job: KernelJob;
  resolve(count: number): void;
  reject(err: Error): void;
}

/** An idle thread is ended after this long (see the file comment). */
let idleStopMs = 60_000;

/** Tests: a shorter idle time. */
export function setReaperIdleStop(ms: number): void {
  idleStopMs = ms;
}

let worker: Worker | null = null;
let idleTimer: NodeJS.Timeout | null = null;
let nextId = 1;
const pending = new Map<number, Pending>();
let onFailure: (name: string, err: Error) => void = () => undefined;

/** Where failed background deletions are reported (the daemon logs them). */
export function onReapFailure(fn: (name: string, err: Error) => void): void {
  onFailure = fn;
}

function failAll(err: Error): void {
  for (const p of pending.values()) p.reject(err);
  pending.clear();
}

function getWorker(): Worker | null {
  if (worker) return worker;
  if (!WORKER_JS) return null;
  const w = new Worker(WORKER_JS);
  // The thread must not keep a stopping driver alive: close() drains it first.
  w.unref();
  w.on('message', (r: JobResult) => {
    const p = pending.get(r.id);
    if (!p) return;
    pending.delete(r.id);
    if (r.error) p.reject(new Error(`could not ${describeJob(p.job)}: ${r.error}`));
    else p.resolve(r.count ?? 0);
  });
  // Only the current thread's end fails what is pending: a thread ended for idleness may exit
  // after its successor took new requests.
  w.on('error', (err) => {
    if (worker !== w) return;
    worker = null;
    failAll(err);
  });
  w.on('exit', () => {
    if (worker !== w) return;
    worker = null;
    failAll(new Error('kernel thread exited'));
  });
  worker = w;
  return w;
}

/** Every job handed over and not settled yet (worker or inline): the thread idles when none is. */
const inflight = new Set<Promise<void>>();
/** The link deletions among them (drainReaper). */
const links = new Set<Promise<void>>();

function track(done: Promise<unknown>, set: Set<Promise<void>>, onError: (err: Error) => void = () => undefined): void {
  const settled = done.then(() => undefined, onError);
  set.add(settled);
  void settled.finally(() => {
    set.delete(settled);
    if (inflight.size === 0) stopWhenIdle();
  });
}

function submit(job: KernelJob): Promise<number> {
  if (idleTimer) clearTimeout(idleTimer);
  idleTimer = null;
  const w = getWorker();
  const done = w
    ? new Promise<number>((resolve, reject) => {
        const id = nextId++;
        pending.set(id, { job, resolve, reject });
        w.postMessage({ id, job } satisfies JobRequest);
      })
    : runKernelJob(job);
  track(done, inflight);
  return done;
}

/**
 * Deletes the link in the background. The promise settles when the kernel is done (callers
 * that answer Docker earlier do not await it); a failure is also reported to onReapFailure.
 */
export function reapLink(name: string): Promise<void> {
  const done = submit({ kind: 'deleteLink', name }).then(() => undefined);
  track(done, links, (err) => onFailure(name, err));
  return done;
}

/** conntrack.ts's forgetFlows, in the kernel thread: resolves with the entries removed. */
export function forgetFlows(addresses: string[], filterAbove = FILTER_ABOVE): Promise<number> {
  return submit({ kind: 'forgetFlows', addresses, filterAbove });
}

function stopWhenIdle(): void {
  if (!worker || idleTimer) return;
  idleTimer = setTimeout(() => {
    idleTimer = null;
    const w = worker;
    if (!w || inflight.size > 0) return;
    worker = null;
    void w.terminate();
  }, idleStopMs);
  idleTimer.unref();
}

/** Resolves once every job of `set` handed over so far is done (or failed), or after timeoutMs. */
async function drain(set: Set<Promise<void>>, timeoutMs: number): Promise<void> {
  if (set.size === 0) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all([...set]), new Promise<void>((res) => { timer = setTimeout(res, timeoutMs); })]);
  clearTimeout(timer);
}

/** Resolves once every link handed over so far is deleted (or failed), or after timeoutMs. */
export function drainReaper(timeoutMs = 10_000): Promise<void> {
  return drain(links, timeoutMs);
}

/** Links handed over and not yet deleted (status, tests). */
export function reaperBacklog(): number {
  return links.size;
}

/** Clean stop: finish every job handed over (links and conntrack cleanups), then end the thread. */
export async function closeReaper(timeoutMs = 10_000): Promise<void> {
  await drain(inflight, timeoutMs);
  if (idleTimer) clearTimeout(idleTimer);
  idleTimer = null;
  const w = worker;
  worker = null;
  if (w) await w.terminate();
  failAll(new Error('kernel thread exited'));
}

/** Whether the thread is running (tests). */
export function reaperThreadRunning(): boolean {
  return worker !== null;
}
