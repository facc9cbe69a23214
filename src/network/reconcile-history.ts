// The last reconcile pass that could change things (at start-up or on demand), for `vxnet status`:
// the start-up pass runs unattended, and its one log line is easy to miss. Dry runs change
// nothing and are not remembered; observers (metrics) hear of every real pass.
import { causeText } from '../errors';
import type { ReconcilePlan } from './reconcile';

export type ReconcileTrigger = 'startup' | 'dockerd-start' | 'on-demand';

export interface LastReconcile {
  /** When the pass ended (ISO 8601). */
  at: string;
  trigger: ReconcileTrigger;
  /** What the pass changed; null when it failed. */
  plan: ReconcilePlan | null;
  error: string | null;
}

export type ReconcileRunner = (dryRun: boolean) => Promise<ReconcilePlan>;

export class ReconcileHistory {
  private lastPass: LastReconcile | null = null;

  constructor(
    private readonly run: ReconcileRunner,
    private readonly onPass: (plan: ReconcilePlan | null) => void = () => undefined,
    private readonly now: () => number = Date.now,
  ) {}

  /** The reconcile to hand to a trigger: the same pass, remembered under that trigger's name. */
  runner(trigger: ReconcileTrigger): ReconcileRunner {
    return async (dryRun) => {
      if (dryRun) return this.run(true);
      try {
        const plan = await this.run(false);
        this.remember(trigger, plan, null);
        return plan;
      } catch (err) {
        this.remember(trigger, null, causeText(err));
        throw err;
      }
    };
  }

  last(): LastReconcile | null {
    return this.lastPass;
  }

  private remember(trigger: ReconcileTrigger, plan: ReconcilePlan | null, error: string | null): void {
    this.lastPass = { at: new Date(this.now()).toISOString(), trigger, plan, error };
    this.onPass(plan);
  }
}
