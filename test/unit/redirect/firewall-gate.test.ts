// `--fast-path auto`'s switch: redirect only after a check found nothing of anyone else's,
// suspend (empty every block) as soon as one finds something or cannot read the tables.
import pino from 'pino';
import { FirewallGate } from '../../../src/redirect/firewall-gate';

const silent = pino({ level: 'silent' });

function world(rules: () => Promise<string[]>) {
  const calls: string[] = [];
  const gate = new FirewallGate({
    rules,
    redirect: {
      pause: async () => void calls.push('pause'),
      resume: () => void calls.push('resume'),
    },
    log: silent,
  });
  return { gate, calls };
}

describe('FirewallGate', () => {
  it('redirects once a check finds nothing, suspends when a rule appears, and resumes when it goes', async () => {
    let rules: string[] = [];
    const { gate, calls } = world(async () => rules);
    expect(gate.status()).toEqual({ state: 'unknown', rules: [] });
    await gate.check();
    expect(calls).toEqual(['resume']);
    expect(gate.status().state).toBe('redirecting');
    await gate.check();
    expect(calls).toEqual(['resume']);
    rules = ['iptables DOCKER-USER -s 10.0.0.0/8 -j DROP'];
    await gate.check();
    expect(calls).toEqual(['resume', 'pause']);
    expect(gate.status()).toEqual({ state: 'suspended', rules });
    rules = [];
    await gate.check();
    expect(calls).toEqual(['resume', 'pause', 'resume']);
  });

  it('suspends when the tables cannot be read, naming why', async () => {
    const { gate, calls } = world(async () => {
      throw new Error('could not list the iptables filter table: xtables lock');
    });
    await gate.check();
    expect(calls).toEqual(['pause']);
    expect(gate.status().rules[0]).toContain('xtables lock');
  });

  it('never rejects when the blocks cannot be emptied; the next check tries again', async () => {
    let fail = true;
    const calls: string[] = [];
    const gate = new FirewallGate({
      rules: async () => ['iptables DOCKER-USER -j DROP'],
      redirect: {
        pause: async () => {
          calls.push('pause');
          if (fail) throw new Error('could not run tc');
        },
        resume: () => void calls.push('resume'),
      },
      log: silent,
    });
    await expect(gate.check()).resolves.toBeUndefined();
    fail = false;
    await gate.check();
    expect(calls).toEqual(['pause', 'pause']);
    expect(gate.status().state).toBe('suspended');
  });

  it('coalesces: checks asked for during one run one more after it, which sees the latest tables', async () => {
    let reads = 0;
    let rules: string[] = [];
    const { gate, calls } = world(async () => {
      reads++;
      const now = rules;
      await new Promise((r) => setTimeout(r, 20));
      return now;
    });
    const first = gate.check();
    rules = ['nft inet filter forward (hook forward): 1 rules, policy accept'];
    void gate.check();
    void gate.check();
    await first;
    expect(reads).toBe(2);
    expect(calls).toEqual(['resume', 'pause']);
    expect(gate.status().state).toBe('suspended');
  });
});
