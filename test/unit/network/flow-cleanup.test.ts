// src/network/flow-cleanup.ts: conntrack cleanups run in the background, one walk at a time (the
// addresses that arrive meanwhile share the next), and CreateEndpoint's wait (settled) covers
// exactly the addresses being cleaned or waiting to be.
import { PassThrough } from 'node:stream';
import { FlowCleanup } from '../../../src/network/flow-cleanup';
import { createLogger } from '../../../src/log';

function deferred(): { promise: Promise<number>; resolve(n: number): void; reject(e: Error): void } {
  let resolve!: (n: number) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<number>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('src/network/flow-cleanup.ts', () => {
  const calls: Array<{ ips: string[]; d: ReturnType<typeof deferred> }> = [];
  const lines: string[] = [];
  let flows: FlowCleanup;

  beforeEach(() => {
    calls.length = 0;
    lines.length = 0;
    const out = new PassThrough();
    out.on('data', (b: Buffer) => lines.push(b.toString()));
    flows = new FlowCleanup({
      dataplane: {
        forgetFlows: (ips) => {
          const d = deferred();
          calls.push({ ips, d });
          return d.promise;
        },
      },
      log: createLogger('debug', out),
    });
  });

  const isSettled = async (p: Promise<void>): Promise<boolean> => {
    let done = false;
    void p.then(() => (done = true));
    await new Promise((r) => setImmediate(r));
    return done;
  };

  it('starts at once with the bare canonical addresses; only their CreateEndpoint waits for it', async () => {
    flows.start('ep1', ['10.0.0.5/24', 'fd00:0:0::5/64', null]);
    expect(calls.map((c) => c.ips)).toEqual([['10.0.0.5', 'fd00::5']]);
    const same = flows.settled(['10.0.0.5', null]);
    expect(await isSettled(same)).toBe(false);
    expect(await isSettled(flows.settled(['10.0.0.6', null]))).toBe(true);
    calls[0].d.resolve(2);
    expect(await isSettled(same)).toBe(true);
    expect(await isSettled(flows.settled(['fd00::5']))).toBe(true);
  });

  it('runs a second cleanup of an address after the first, and a failure is logged, not thrown', async () => {
    flows.start('ep1', ['10.0.0.5/24']);
    flows.start('ep2', ['10.0.0.5/24']);
    expect(calls).toHaveLength(1);
    calls[0].d.reject(new Error('EPERM'));
    await new Promise((r) => setImmediate(r));
    expect(calls).toHaveLength(2);
    expect(await isSettled(flows.settled(['10.0.0.5']))).toBe(false);
    calls[1].d.resolve(0);
    await flows.drain();
    expect(await isSettled(flows.settled(['10.0.0.5']))).toBe(true);
    expect(lines.join('')).toContain('could not remove conntrack entries');
  });

  it('endpoints that go while a walk runs share the next one, and each address waits for its own walk', async () => {
    flows.start('ep1', ['10.0.0.1/24']);
    flows.start('ep2', ['10.0.0.2/24']);
    flows.start('ep3', ['10.0.0.3/24', 'fd00::3/64']);
    flows.start('ep4', ['10.0.0.2/24']);
    expect(calls.map((c) => c.ips)).toEqual([['10.0.0.1']]);
    const second = flows.settled(['10.0.0.3']);
    calls[0].d.resolve(1);
    await new Promise((r) => setImmediate(r));
    expect(await isSettled(flows.settled(['10.0.0.1']))).toBe(true);
    expect(calls.map((c) => c.ips)).toEqual([['10.0.0.1'], ['10.0.0.2', '10.0.0.3', 'fd00::3']]);
    expect(await isSettled(second)).toBe(false);
    calls[1].d.resolve(4);
    expect(await isSettled(second)).toBe(true);
    await flows.drain();
    expect(calls).toHaveLength(2);
    expect(lines.join('')).toContain('"endpoints":["ep2","ep3","ep4"],"flows":4');
  });

  it('does nothing for an endpoint without addresses', async () => {
    flows.start('ep1', [null, null]);
    expect(calls).toEqual([]);
    await flows.drain();
  });
});
