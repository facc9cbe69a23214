// Which etcd member a call may go to, when the store has several endpoints.
//
// etcd3 tries the members in a shuffled order and asks each member's fault policy whether a call
// may go there: a policy that throws BrokenCircuitError without calling makes etcd3 try the next
// member. A member that failed in transport (refused, reset, no answer within an attempt) is
// skipped for a pause, so the retry of that call, and the calls after it, go to a member that
// works: one member down fails no call.
//
// Why not cockatiel's circuit breaker, which vxnet used first: a breaker knows only its own
// member. While etcd elects a new leader every live member holds a write until the attempt's
// deadline, so every breaker opened, and for the pause every call failed at once with "every
// endpoint failed recently" though two members were up again (seen in CI: one `docker run` failed
// while members died one at a time). A half-open breaker also lets exactly one call through and
// refuses the others while that call is in flight. Here the members share one record, and when
// every member failed recently the one whose failure is oldest is tried: a call is never refused
// without reaching some member.
import { BrokenCircuitError, type IDefaultPolicyContext, type IFailureEvent, type IPolicy, type ISuccessEvent } from 'cockatiel';
import type { Event } from 'cockatiel';

type Clock = () => number;

const noEvent = ((): { dispose(): void } => ({ dispose: () => undefined })) as Event<never>;

export class MemberChoice {
  /** When each member last failed in transport; absent when its last call went through. */
  private readonly failedAt = new Map<string, number>();

  constructor(
    private readonly members: readonly string[],
    private readonly pauseMs: number,
    /** Whether an error says the member itself could not be reached. */
    private readonly unreachable: (err: Error) => boolean,
    private readonly now: Clock = Date.now,
  ) {}

  /** The fault policy etcd3 runs a call to `member` through. */
  policy(member: string): IPolicy<IDefaultPolicyContext> {
    const execute = <T>(fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T): Promise<T> => this.execute(member, fn);
    return {
      execute,
      onSuccess: noEvent as Event<ISuccessEvent>,
      onFailure: noEvent as Event<IFailureEvent>,
    } as unknown as IPolicy<IDefaultPolicyContext>;
  }

  /** Whether a call may go to `member` now. */
  mayCall(member: string): boolean {
    const t = this.failedAt.get(member);
    const now = this.now();
    if (t === undefined || now - t >= this.pauseMs) return true;
    // Every member failed recently: only the one that failed longest ago is tried.
    for (const m of this.members) {
      const other = this.failedAt.get(m);
      if (other === undefined || now - other >= this.pauseMs || other < t) return false;
    }
    return true;
  }

  private async execute<T>(member: string, fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T): Promise<T> {
    if (!this.mayCall(member)) throw new BrokenCircuitError();
    const signal = new AbortController().signal;
    try {
      const value = await fn({ signal });
      this.failedAt.delete(member);
      return value;
    } catch (err) {
      if (err instanceof Error && this.unreachable(err)) this.failedAt.set(member, this.now());
      throw err;
    }
  }
}
