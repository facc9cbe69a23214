// The kernel work that blocks the thread that asks for it, run by the kernel thread
// (kernel-thread.ts) or, where its compiled worker is missing, inline.
import { forgetFlows } from './conntrack';
import { deleteLink } from './rtnl';

export type KernelJob =
  | { kind: 'deleteLink'; name: string }
  | { kind: 'forgetFlows'; addresses: string[]; filterAbove: number };

/** Runs one job; a count for forgetFlows (entries deleted), 0 otherwise. */
export async function runKernelJob(job: KernelJob): Promise<number> {
  if (job.kind === 'deleteLink') {
    await deleteLink(job.name);
    return 0;
  }
  return forgetFlows(job.addresses, job.filterAbove);
}

/** What a job is, in an error message: "could not <this>: <cause>". */
export function describeJob(job: KernelJob): string {
  return job.kind === 'deleteLink' ? `delete link ${job.name}` : `remove the conntrack entries of ${job.addresses.join(', ')}`;
}
