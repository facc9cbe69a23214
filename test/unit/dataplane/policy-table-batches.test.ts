import { elementBatches, emptyPolicySets, ruleKeys } from '../../../src/dataplane/policy-table';
import { keyBytes } from '../../../src/dataplane/nft-elements';

describe('src/dataplane/policy-table.ts plainBatches (netlink path for address-only changes)', () => {
  const empty = emptyPolicySets();

  it('an endpoint becoming pending / released: its address in policed_in, drop_in and the fast path\'s copy, deletions first', () => {
    const pending = { ...empty, policedIn: ['10.0.0.5'] };
    const add = elementBatches(empty, pending);
    expect(add?.map((b) => [b.op, b.family, b.set, b.keys.length])).toEqual([
      ['destroy', 'inet', 'policed_in', 0],
      ['destroy', 'inet', 'drop_in', 0],
      ['destroy', 'bridge', 'policed_in', 0],
      ['add', 'inet', 'policed_in', 1],
      ['add', 'inet', 'drop_in', 1],
      ['add', 'bridge', 'policed_in', 1],
    ]);
    expect(add?.[3].keys[0]).toEqual(keyBytes([{ type: 'ipv4_addr', value: '10.0.0.5' }]));
    const release = elementBatches(pending, empty);
    expect(release?.filter((b) => b.keys.length > 0).map((b) => [b.op, b.family, b.set])).toEqual([
      ['destroy', 'inet', 'policed_in'],
      ['destroy', 'inet', 'drop_in'],
      ['destroy', 'bridge', 'policed_in'],
    ]);
  });

  it('IPv6 addresses go to the IPv6 sets, their drop counting mirror and the fast path\'s copy', () => {
    const b = elementBatches(empty, { ...empty, policedOut6: ['fd00::5'] });
    expect(b?.filter((x) => x.keys.length > 0).map((x) => [x.family, x.set, x.keys[0].length])).toEqual([
      ['inet', 'policed_out6', 16],
      ['inet', 'drop_out6', 16],
      ['bridge', 'policed_out6', 16],
    ]);
  });

  it('a rule change: the interval element as its first and last key (address . address . proto . port)', () => {
    const b = elementBatches(empty, { ...empty, policedIn: ['10.0.0.5'], allowIn: ['10.0.0.5 . 10.0.0.6-10.0.0.9 . 6 . 80-90'] });
    const rules = b?.find((x) => x.set === 'allow_in' && x.op === 'add');
    expect(rules?.keys).toEqual([Buffer.from([10, 0, 0, 5, 10, 0, 0, 6, 6, 0, 0, 0, 0, 80, 0, 0])]);
    expect(rules?.keyEnds).toEqual([Buffer.from([10, 0, 0, 5, 10, 0, 0, 9, 6, 0, 0, 0, 0, 90, 0, 0])]);
    expect(b?.filter((x) => x.keys.length > 0).map((x) => [x.op, x.set])).toEqual([
      ['add', 'policed_in'],
      ['add', 'drop_in'],
      ['add', 'policed_in'],
      ['add', 'allow_in'],
    ]);
    // A single value is a range of one: first and last key alike.
    expect(ruleKeys('10.0.0.5 . 10.0.0.6 . 0-255 . 0-65535').end).toEqual(Buffer.from([10, 0, 0, 5, 10, 0, 0, 6, 255, 0, 0, 0, 255, 255, 0, 0]));
  });

  it('a change of the IPv6 interval set is left to nft', () => {
    expect(elementBatches(empty, { ...empty, policedOut6: ['fd00::5'], allowOut6: ['fd00::5 . fd00::/64'] })).toBeNull();
  });

  it('refuses a rule element out of shape', () => {
    expect(() => elementBatches(empty, { ...empty, allowIn: ['10.0.0.5 . 10.0.0.6 . 6'] })).toThrow(/refusing/);
    expect(() => ruleKeys('10.0.0.5 . 10.0.0.6 . 6 . 70000')).toThrow(/refusing/);
    expect(() => ruleKeys('10.0.0.5-10.0.0.6 . 10.0.0.6 . 6 . 80')).toThrow(/refusing/);
  });

  it('refuses an element that is not an address', () => {
    expect(() => elementBatches(empty, { ...empty, policedIn: ['10.0.0.5; flush ruleset'] })).toThrow(/refusing/);
  });
});
