import { emptyPolicySets, plainBatches } from '../../../src/dataplane/policy-table';
import { keyBytes } from '../../../src/dataplane/nft-elements';

describe('src/dataplane/policy-table.ts plainBatches (netlink path for address-only changes)', () => {
  const empty = emptyPolicySets();

  it('an endpoint becoming pending / released: its address in policed_in and drop_in, deletions first', () => {
    const pending = { ...empty, policedIn: ['10.0.0.5'] };
    const add = plainBatches(empty, pending);
    expect(add?.map((b) => [b.op, b.set, b.keys.length])).toEqual([
      ['destroy', 'policed_in', 0],
      ['destroy', 'drop_in', 0],
      ['add', 'policed_in', 1],
      ['add', 'drop_in', 1],
    ]);
    expect(add?.[2].keys[0]).toEqual(keyBytes([{ type: 'ipv4_addr', value: '10.0.0.5' }]));
    const release = plainBatches(pending, empty);
    expect(release?.filter((b) => b.keys.length > 0).map((b) => [b.op, b.set])).toEqual([
      ['destroy', 'policed_in'],
      ['destroy', 'drop_in'],
    ]);
  });

  it('IPv6 addresses go to the IPv6 sets', () => {
    const b = plainBatches(empty, { ...empty, policedOut6: ['fd00::5'] });
    expect(b?.filter((x) => x.keys.length > 0).map((x) => [x.set, x.keys[0].length])).toEqual([['policed_out6', 16]]);
  });

  it('a change of an interval set (rules) is left to nft', () => {
    expect(plainBatches(empty, { ...empty, policedIn: ['10.0.0.5'], allowIn: ['10.0.0.5 . 10.0.0.6 . 6 . 80'] })).toBeNull();
  });

  it('refuses an element that is not an address', () => {
    expect(() => plainBatches(empty, { ...empty, policedIn: ['10.0.0.5; flush ruleset'] })).toThrow(/refusing/);
  });
});
