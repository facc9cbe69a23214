import { Check, exitCode, fail, pass, runChecks, warn } from '../../../src/doctor/check';

describe('src/doctor/check.ts', () => {
  it('runs every check in order and names each result', async () => {
    const seen: string[] = [];
    const checks: Check<string[]>[] = ['a', 'b', 'c'].map((name) => ({
      name,
      async run(ctx) {
        ctx.push(name);
        return pass(`${name} ok`);
      },
    }));
    const results = await runChecks(checks, seen);
    expect(seen).toEqual(['a', 'b', 'c']);
    expect(results).toEqual([
      { name: 'a', status: 'PASS', detail: 'a ok' },
      { name: 'b', status: 'PASS', detail: 'b ok' },
      { name: 'c', status: 'PASS', detail: 'c ok' },
    ]);
  });

  it('fails a check that runs out of time with its own fix, and goes on', async () => {
    const hang: Check<null> = { name: 'hang', timeoutMs: 50, timeoutFix: 'unhang it', run: () => new Promise(() => undefined) };
    const next: Check<null> = { name: 'next', run: async () => pass('fine') };
    const started = Date.now();
    const results = await runChecks([hang, next], null);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(results[0]).toEqual({ name: 'hang', status: 'FAIL', detail: 'no result within 0.05 s', fix: 'unhang it' });
    expect(results[1].status).toBe('PASS');
  });

  it('turns a check that throws into a failure naming the error', async () => {
    const boom: Check<null> = { name: 'boom', run: async () => { throw new Error('kaput'); } };
    const [r] = await runChecks([boom], null);
    expect(r.status).toBe('FAIL');
    expect(r.detail).toContain('kaput');
    expect(r.fix).toBeTruthy();
  });

  it('exits 1 only when a check failed', () => {
    const named = (v: ReturnType<typeof pass>) => ({ name: 'x', ...v });
    expect(exitCode([named(pass('a')), named(warn('b', 'c'))])).toBe(0);
    expect(exitCode([named(pass('a')), named(fail('b', 'c'))])).toBe(1);
    expect(exitCode([])).toBe(0);
  });
});
