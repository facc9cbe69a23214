// Undo steps pushed after each change a handler makes, run in reverse when a later step fails
// (containernetworking's `success` flag and deferred cleanups).
import type { Logger } from '../log';

interface Step {
  what: string;
  run: () => Promise<void>;
}

export class Undo {
  private steps: Step[] = [];

  constructor(private readonly log: Logger) {}

  push(what: string, run: () => Promise<void>): void {
    this.steps.push({ what, run });
  }

  clear(): void {
    this.steps = [];
  }

  /** Runs every step, newest first; a failing step is logged and the rest still run. */
  async run(): Promise<void> {
    const steps = this.steps.reverse();
    this.steps = [];
    for (const step of steps) {
      try {
        await step.run();
      } catch (err) {
        this.log.warn({ err, step: step.what }, 'rollback step failed');
      }
    }
  }
}
