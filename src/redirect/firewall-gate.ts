// `--fast-path auto`: the redirect runs only while nothing of anyone else's sees the frames it
// takes past the host's forward path (dataplane/forward-path.ts says which rules those are).
// A user who inserts a rule into DOCKER-USER sees vxnet's frames between hosts in it from a
// moment later on: the ruleset monitor reports the change at once, the check finds the rule, and
// every block is emptied (frames take the bridge, and the rule, again; bench:datapath saw this
// take 0.10-0.17 s from outside). When the rule goes, the blocks
// are rebuilt. Until the first check has said "nothing", nothing is redirected; a check that
// cannot read the tables suspends too (not knowing is not "nothing").
import type { Logger } from '../log';

export interface GateDeps {
  /** What sees the frames before vxnet's verdict (empty: nothing); rejects when unreadable. */
  rules(): Promise<string[]>;
  redirect: { pause(): Promise<void>; resume(): void };
  log: Logger;
}

export type GateState = 'unknown' | 'redirecting' | 'suspended';

/** `vxnet status`: `--fast-path redirect` is always 'redirecting'. */
export interface RedirectStatus {
  state: GateState;
  rules: string[];
}

export class FirewallGate {
  private state: GateState = 'unknown';
  private reason: string[] = [];
  private running: Promise<void> | null = null;
  private again = false;
  private closed = false;

  constructor(private readonly deps: GateDeps) {}

  /** For status and metrics: whether frames are redirected now, and what stops them if not. */
  status(): RedirectStatus {
    return { state: this.state, rules: [...this.reason] };
  }

  /**
   * Reads the tables again (coalesced: a change during a check runs one more after it). Never
   * rejects.
   */
  check(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    const run = (async () => {
      do {
        this.again = false;
        await this.checkOnce();
      } while (this.again && !this.closed);
    })().finally(() => (this.running = null));
    this.running = run;
    return run;
  }

  close(): void {
    this.closed = true;
  }

  private async checkOnce(): Promise<void> {
    if (this.closed) return;
    const started = process.hrtime.bigint();
    const ms = (): number => Math.round(Number(process.hrtime.bigint() - started) / 1e4) / 100;
    let rules: string[];
    try {
      rules = await this.deps.rules();
    } catch (err) {
      rules = [`the forward path could not be read: ${(err as Error).message}`];
    }
    if (this.closed) return;
    const { log, redirect } = this.deps;
    if (rules.length === 0) {
      if (this.state === 'redirecting') return;
      this.state = 'redirecting';
      this.reason = [];
      log.info({ ms: ms() }, '--fast-path auto: no rule of anyone else sees frames between hosts before vxnet\'s; redirecting them past the bridge');
      redirect.resume();
      return;
    }
    const changed = this.state !== 'suspended' || rules.join('\n') !== this.reason.join('\n');
    this.state = 'suspended';
    this.reason = rules;
    // Emptied before the log line: the rule applies from here on.
    try {
      await redirect.pause();
    } catch (err) {
      // The next check (any change, any reconcile) tries again.
      log.error({ err, rules: rules.slice(0, 10) }, '--fast-path auto: could not empty the redirect blocks; frames between hosts may still skip these rules');
      return;
    }
    // ms: from the check's start (the notification) until every block was empty.
    if (changed) log.warn({ rules: rules.slice(0, 10), count: rules.length, ms: ms() }, '--fast-path auto: rules of someone else see frames between hosts; redirect suspended, frames take the bridge and those rules');
  }
}
