import { doctorJson, formatDoctor } from '../../../src/cli/doctor';
import type { CheckResult } from '../../../src/doctor';

describe('src/cli/doctor.ts', () => {
  const results: CheckResult[] = [
    { name: 'kernel', status: 'PASS', detail: 'bridge, veth pair and VXLAN device created' },
    { name: 'underlay-mtu', status: 'FAIL', detail: 'eth0 MTU 1400 is below 1500', fix: 'lower VXNET_MTU to 1350' },
    { name: 'socket', status: 'WARN', detail: 'no socket', fix: 'start it' },
  ];

  it('prints one aligned line per check, the fix on the same line, then a count', () => {
    expect(formatDoctor(results)).toBe(
      [
        'PASS  kernel        bridge, veth pair and VXLAN device created',
        'FAIL  underlay-mtu  eth0 MTU 1400 is below 1500 — fix: lower VXNET_MTU to 1350',
        'WARN  socket        no socket — fix: start it',
        '1 passed, 1 warned, 1 failed',
        '',
      ].join('\n'),
    );
  });

  it('gives scripts the same checks and the verdict as JSON', () => {
    expect(JSON.parse(doctorJson(results))).toEqual({ ok: false, checks: results });
    expect(JSON.parse(doctorJson(results.slice(0, 1))).ok).toBe(true);
  });
});
