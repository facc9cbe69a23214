import { isBrokenCircuitError } from 'cockatiel';
import { MemberChoice } from '../../../src/store/member-choice';

const MEMBERS = ['http://a:2379', 'http://b:2379', 'http://c:2379'];
const PAUSE = 2000;
const down = (): Promise<never> => Promise.reject(new Error('14 UNAVAILABLE: connect ECONNREFUSED'));
const busy = (): Promise<never> => Promise.reject(new Error('etcdserver: leader changed'));
const up = (): Promise<string> => Promise.resolve('ok');

describe('src/store/member-choice.ts', () => {
  let now: number;
  let choice: MemberChoice;
  beforeEach(() => {
    now = 1_000_000;
    choice = new MemberChoice(MEMBERS, PAUSE, (err) => !/etcdserver:/.test(err.message), () => now);
  });

  /** What a call through `member`'s policy did: its answer, the error it passed on, or "skipped". */
  async function call(member: string, fn: () => Promise<string>): Promise<string> {
    try {
      return await choice.policy(member).execute(fn);
    } catch (err) {
      return isBrokenCircuitError(err) ? 'skipped' : (err as Error).message;
    }
  }

  it('skips a member that could not be reached, for the pause, while another member can be called', async () => {
    expect(await call(MEMBERS[0], down)).toMatch(/ECONNREFUSED/);
    let ran = false;
    expect(
      await call(MEMBERS[0], () => {
        ran = true;
        return up();
      }),
    ).toBe('skipped');
    expect(ran).toBe(false);
    expect(await call(MEMBERS[1], up)).toBe('ok');
    now += PAUSE;
    expect(await call(MEMBERS[0], up)).toBe('ok');
    expect(choice.mayCall(MEMBERS[0])).toBe(true);
  });

  it('does not skip a member that answered with an etcd error (an election is every member at once)', async () => {
    expect(await call(MEMBERS[0], busy)).toBe('etcdserver: leader changed');
    expect(choice.mayCall(MEMBERS[0])).toBe(true);
  });

  it('when every member failed recently, tries the one that failed longest ago instead of refusing the call', async () => {
    expect(await call(MEMBERS[1], down)).toMatch(/ECONNREFUSED/);
    now += 300;
    expect(await call(MEMBERS[0], down)).toMatch(/ECONNREFUSED/);
    now += 300;
    expect(await call(MEMBERS[2], down)).toMatch(/ECONNREFUSED/);
    expect(MEMBERS.map((m) => choice.mayCall(m))).toEqual([false, true, false]);
    // It fails again: now the next oldest is the one to try.
    expect(await call(MEMBERS[1], down)).toMatch(/ECONNREFUSED/);
    expect(MEMBERS.map((m) => choice.mayCall(m))).toEqual([true, false, false]);
    // It answers: it is preferred at once, and the others stay skipped for their pause.
    expect(await call(MEMBERS[0], up)).toBe('ok');
    expect(MEMBERS.map((m) => choice.mayCall(m))).toEqual([true, false, false]);
  });

  it('lets concurrent calls through to a member (no single trial call as in a half-open breaker)', async () => {
    expect(await call(MEMBERS[0], down)).toMatch(/ECONNREFUSED/);
    now += PAUSE;
    let release: (v: string) => void = () => undefined;
    const slow = choice.policy(MEMBERS[0]).execute(() => new Promise<string>((r) => (release = r)));
    expect(await call(MEMBERS[0], up)).toBe('ok');
    release('late');
    expect(await slow).toBe('late');
  });
});
