import pino from 'pino';
import { reconcileUntilDockerd, RECONCILE_RETRY_MS, RECONCILE_RETRY_FOR_MS } from '../../../src/network/reconcile-until-dockerd';

const log = pino({ level: 'silent' });

/** Starts the loop and lets its first pass run. */
async function started(run: () => Promise<{ dockerdAnswered: boolean }>, ping: () => Promise<boolean>): Promise<{ stop(): void }> {
  const loop = reconcileUntilDockerd(run, ping, log);
  for (let i = 0; i < 10; i++) await Promise.resolve();
  return loop;
}

describe('src/network/reconcile-until-dockerd.ts', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('runs once when dockerd answers the first pass', async () => {
    const run = jest.fn(async () => ({ dockerdAnswered: true }));
    const ping = jest.fn(async () => true);
    const loop = await started(run, ping);
    await jest.advanceTimersByTimeAsync(RECONCILE_RETRY_MS * 5);
    expect(run).toHaveBeenCalledTimes(1);
    expect(ping).not.toHaveBeenCalled();
    loop.stop();
  });

  it('without dockerd: one pass for the kernel, then only pings, and the full pass once dockerd answers', async () => {
    let up = false;
    const run = jest.fn(async () => ({ dockerdAnswered: up }));
    const ping = jest.fn(async () => up);
    const loop = await started(run, ping);
    await jest.advanceTimersByTimeAsync(RECONCILE_RETRY_MS * 3);
    expect(run).toHaveBeenCalledTimes(1);
    expect(ping).toHaveBeenCalledTimes(3);
    up = true;
    await jest.advanceTimersByTimeAsync(RECONCILE_RETRY_MS);
    expect(run).toHaveBeenCalledTimes(2);
    expect(run.mock.calls[1]).toEqual([false]);
    await jest.advanceTimersByTimeAsync(RECONCILE_RETRY_MS * 3);
    expect(run).toHaveBeenCalledTimes(2);
    expect(ping).toHaveBeenCalledTimes(4);
    loop.stop();
  });

  it('stops waiting for dockerd when the window closes', async () => {
    const run = jest.fn(async () => ({ dockerdAnswered: false }));
    const ping = jest.fn(async () => false);
    const loop = await started(run, ping);
    await jest.advanceTimersByTimeAsync(RECONCILE_RETRY_FOR_MS + RECONCILE_RETRY_MS * 5);
    const pings = ping.mock.calls.length;
    expect(pings).toBeGreaterThanOrEqual(RECONCILE_RETRY_FOR_MS / RECONCILE_RETRY_MS - 1);
    expect(pings).toBeLessThanOrEqual(RECONCILE_RETRY_FOR_MS / RECONCILE_RETRY_MS + 1);
    await jest.advanceTimersByTimeAsync(RECONCILE_RETRY_MS * 10);
    expect(ping).toHaveBeenCalledTimes(pings);
    expect(run).toHaveBeenCalledTimes(1);
    loop.stop();
  });

  it('repeats a failed pass whole, also past the window, until it works', async () => {
    let fails = 3;
    const run = jest.fn(async () => {
      if (fails-- > 0) throw new Error('store away');
      return { dockerdAnswered: true };
    });
    const ping = jest.fn(async () => true);
    const loop = await started(run, ping);
    await jest.advanceTimersByTimeAsync(RECONCILE_RETRY_MS * 10);
    expect(run).toHaveBeenCalledTimes(4);
    expect(ping).not.toHaveBeenCalled();
    loop.stop();
  });

  it('a ping that throws counts as no answer', async () => {
    const run = jest.fn(async () => ({ dockerdAnswered: false }));
    const ping = jest.fn(async (): Promise<boolean> => { throw new Error('ECONNREFUSED'); });
    const loop = await started(run, ping);
    await jest.advanceTimersByTimeAsync(RECONCILE_RETRY_MS * 2);
    expect(ping).toHaveBeenCalledTimes(2);
    expect(run).toHaveBeenCalledTimes(1);
    loop.stop();
    await jest.advanceTimersByTimeAsync(RECONCILE_RETRY_MS * 2);
    expect(ping).toHaveBeenCalledTimes(2);
  });
});
