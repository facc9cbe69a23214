// The link reaper's thread (see link-reaper.ts): deletes the links it is sent, one at a time,
// through its own rtnetlink socket, and answers each with its outcome.
import { parentPort } from 'node:worker_threads';
import { closeRtnl, deleteLink } from './rtnl';
import type { ReapRequest, ReapResult } from './link-reaper';

const port = parentPort;
if (port) {
  port.on('message', (req: ReapRequest) => {
    deleteLink(req.name).then(
      () => port.postMessage({ id: req.id } satisfies ReapResult),
      (err: unknown) => port.postMessage({ id: req.id, error: err instanceof Error ? err.message : String(err) } satisfies ReapResult),
    );
  });
  port.on('close', () => closeRtnl());
}
