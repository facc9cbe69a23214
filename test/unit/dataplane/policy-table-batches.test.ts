import { elementBatches, emptyPolicySets, ruleKeys } from '../../../src/dataplane/policy-table';
import { keyBytes } from '../../../src/dataplane/nft-elements';

describe('src/dataplane/policy-table.ts plainBatches (netlink path for address-only changes)', () => {
  const empty = emptyPolicySets();

  it('an endpoint becoming pending / released: its address in policed_in and drop_in, deletions first', () => {
    const pending = { ...empty, policedIn: ['10.0.0.5'] };
    const add = elementBatches(empty, pending);
    expect(add?.map((b) => [b.op, b.set, b.keys.length])).toEqual([
      ['destroy', 'policed_in', 0],
      ['destroy', 'drop_in', 0],
      ['add', 'policed_in', 1],
      ['add', 'drop_in', 1],
    ]);
    expect(add?.[2].keys[0]).toEqual(keyBytes([{ type: 'ipv4_addr', value: '10.0.0.5' }]));
    const release = elementBatches(pending, empty);
    expect(release?.filter((b) => b.keys.length > 0).map((b) => [b.op, b.set])).toEqual([
      ['destroy', 'policed_in'],
      ['destroy', 'drop_in'],
    ]);
  });

  it('IPv6 addresses go to the IPv6 sets, and to their drop counting mirror', () => {
    const b = elementBatches(empty, { ...empty, policedOut6: ['fd00::5'] });
    expect(b?.filter((x) => x.keys.length > 0).map((x) => [x.set, x.keys[0].length])).toEqual([['policed_out6', 16], ['drop_out6', 16]]);
  });

  it('a rule change: the interval element as its first and last key (address . address . proto . port)', () => {
    const b = elementBatches(empty, { ...empty, policedIn: ['10.0.0.5'], allowIn: ['10.0.0.5 . 10.0.0.6-10.0.0.9 . 6 . 80-90'] });
    const rules = b?.find((x) => x.set === 'allow_in' && x.op === 'add');
    expect(rules?.keys).toEqual([Buffer.from([10, 0, 0, 5, 10, 0, 0, 6, 6, 0, 0, 0, 0, 80, 0, 0])]);
    expect(rules?.keyEnds).toEqual([Buffer.from([10, 0, 0, 5, 10, 0, 0, 9, 6, 0, 0, 0, 0, 90, 0, 0])]);
    expect(b?.filter((x) => x.keys.length > 0).map((x) => [x.op, x.set])).toEqual([
      ['add', 'policed_in'],
      ['add', 'drop_in'],
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
