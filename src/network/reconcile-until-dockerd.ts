// The start-up (and dockerd-start) reconcile, repeated until dockerd answers.
import type { Logger } from 'pino';

/** How often the start-up reconcile retries while dockerd does not answer, and for how long. */
export const RECONCILE_RETRY_MS = 10_000;
export const RECONCILE_RETRY_FOR_MS = 10 * 60_000;

/**
 * Reconcile runs after the socket is up: at boot dockerd may be waiting on this plugin, and a
 * reconcile that waited for dockerd first would wait on itself. Until dockerd answers, only the
 * kernel is repaired, once; then dockerd is only asked whether it answers (a ping) until it does
 * (or the retry window closes), and the full pass runs then. Repeating the whole pass instead
 * cost ~0.7 s of CPU every 10 s with 3,333 endpoints on a host without dockerd, and kept the
 * driver from ever going idle (bench:memory). A pass that failed is repeated whole. The same runs
 * again whenever dockerd activates the plugin (a dockerd restart: containers it stopped or lost
 * meanwhile may have endpoints it will never delete).
 */
export function reconcileUntilDockerd(
  run: (dryRun: boolean) => Promise<{ dockerdAnswered: boolean }>,
  dockerdAnswers: () => Promise<boolean>,
  log: Logger,
): { stop(): void } {
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  const started = Date.now();
  // Waiting for dockerd ends with the window; a failed pass (the store away) is retried until it works.
  const later = (next: () => Promise<void>, windowed = true): void => {
    if (stopped || (windowed && Date.now() - started > RECONCILE_RETRY_FOR_MS)) return;
    timer = setTimeout(() => void next(), RECONCILE_RETRY_MS);
    timer.unref();
  };
  const waitForDockerd = async (): Promise<void> => {
    if (stopped) return;
    if (await dockerdAnswers().catch(() => false)) return attempt();
    later(waitForDockerd);
  };
  const attempt = async (): Promise<void> => {
    try {
      const plan = await run(false);
      if (plan.dockerdAnswered || stopped) return;
      later(waitForDockerd);
    } catch (err) {
      log.warn({ err }, 'reconcile failed');
      later(attempt, false);
    }
  };
  void attempt();
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
