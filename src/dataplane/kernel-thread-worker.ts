// The kernel thread (see kernel-thread.ts): runs the jobs it is sent through its own netlink
// sockets and answers each with its outcome.
import { parentPort } from 'node:worker_threads';
import { closeConntrack } from './conntrack';
import { runKernelJob } from './kernel-jobs';
import { closeRtnl } from './rtnl';
import type { JobRequest, JobResult } from './kernel-thread';

const port = parentPort;
if (port) {
  port.on('message', (req: JobRequest) => {
    runKernelJob(req.job).then(
      (count) => port.postMessage({ id: req.id, count } satisfies JobResult),
      (err: unknown) => port.postMessage({ id: req.id, error: err instanceof Error ? err.message : String(err) } satisfies JobResult),
    );
  });
  port.on('close', () => {
    closeRtnl();
    closeConntrack();
  });
}
