// What `--fast-path auto` counts as rules of someone else's on the forward path (from real
// `iptables -S` and `nft -j list chains` output shapes), and which `nft monitor` lines wake it.
import { foreignHookChains, ruleCount, rulesBeforeVxnet } from '../../../src/dataplane/forward-path';
import { changedTables, foreignChange } from '../../../src/dataplane/ruleset-monitor';
import { attr, str, u32 } from '../../../src/dataplane/nlmsg';

const JUMP = '-A DOCKER-USER -m comment --comment vxnet -j VXNET-ISOLATION';
/** dockerd 20.10's filter table with vxnet's jump in place. */
const DOCKERD = [
  '-P INPUT ACCEPT',
  '-P FORWARD DROP',
  '-N DOCKER',
  '-N DOCKER-ISOLATION-STAGE-1',
  '-N DOCKER-USER',
  '-N VXNET-ISOLATION',
  '-A FORWARD -j DOCKER-USER',
  '-A FORWARD -j DOCKER-ISOLATION-STAGE-1',
  '-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  '-A FORWARD -o docker0 -j DOCKER',
  JUMP,
  '-A DOCKER-USER -j RETURN',
  '-A VXNET-ISOLATION -i vxb-+ -o vxb-+ -m physdev --physdev-is-bridged -j ACCEPT',
];

describe('rulesBeforeVxnet', () => {
  it("finds nothing on dockerd's own table: its rules after DOCKER-USER and vxnet's chain never see the frames", () => {
    expect(rulesBeforeVxnet(DOCKERD.join('\n'))).toEqual([]);
  });

  it('without DOCKER-USER (dockerd --iptables=false), vxnet first in FORWARD: nothing; a rule inserted before it: found', () => {
    const bare = ['-P FORWARD ACCEPT', '-N VXNET-ISOLATION', '-A FORWARD -m comment --comment vxnet -j VXNET-ISOLATION', '-A FORWARD -j ufw-before-forward'];
    expect(rulesBeforeVxnet(bare.join('\n'))).toEqual([]);
    expect(rulesBeforeVxnet(['-A FORWARD -s 10.9.0.0/16 -j DROP', ...bare].join('\n'))).toEqual(['FORWARD -s 10.9.0.0/16 -j DROP']);
  });

  it("finds a user's rule inserted into DOCKER-USER, or into FORWARD before dockerd's jump", () => {
    const user = DOCKERD.flatMap((l) => (l === JUMP ? ['-A DOCKER-USER -s 10.104.0.2/32 -j DROP', l] : [l]));
    expect(rulesBeforeVxnet(user.join('\n'))).toEqual(['DOCKER-USER -s 10.104.0.2/32 -j DROP']);
    const first = DOCKERD.flatMap((l) => (l === '-A FORWARD -j DOCKER-USER' ? ['-A FORWARD -p tcp --dport 22 -j DROP', l] : [l]));
    expect(rulesBeforeVxnet(first.join('\n'))).toEqual(['FORWARD -p tcp --dport 22 -j DROP']);
  });

  it("counts a missing vxnet jump (dockerd rebuilding its chains) as unknown: what FORWARD does then is someone else's", () => {
    const found = rulesBeforeVxnet(DOCKERD.filter((l) => l !== JUMP).join('\n'));
    expect(found).toEqual(['no jump to VXNET-ISOLATION in FORWARD or DOCKER-USER']);
  });

  it('skips rules that name an interface no vxnet bridge can have (a bridged frame shows its bridge there)', () => {
    const with_ = (rules: string[]): string => DOCKERD.flatMap((l) => (l === JUMP ? [...rules, l] : [l])).join('\n');
    // Docker's own DOCKER-USER example, and a hand-made bridge's ACCEPT: never these frames.
    expect(rulesBeforeVxnet(with_(['-A DOCKER-USER -i eth0 ! -s 192.168.1.1/32 -j DROP', '-A DOCKER-USER -i br0 -o br0 -j ACCEPT', '-A DOCKER-USER -o docker+ -j DROP']))).toEqual([]);
    expect(rulesBeforeVxnet(['-A FORWARD -i vxt-dh-br -o vxt-dh-br -j ACCEPT', ...DOCKERD].join('\n'))).toEqual([]);
    // Negated, wildcards that reach vxb-N, a vxnet bridge by name, physdev: they may see them.
    const may = ['-A DOCKER-USER ! -i eth0 -j DROP', '-A DOCKER-USER -i vx+ -j DROP', '-A DOCKER-USER -o vxb-300 -j DROP', '-A DOCKER-USER -i + -j DROP', '-A DOCKER-USER -m physdev --physdev-in vxe-1 -j DROP'];
    expect(rulesBeforeVxnet(with_(may))).toEqual(may.map((r) => r.slice(3)));
  });

  it("skips jumps to dockerd's own chains above DOCKER-USER (DOCKER-INGRESS on a swarm node)", () => {
    expect(rulesBeforeVxnet(['-N DOCKER-INGRESS', '-A FORWARD -j DOCKER-INGRESS', ...DOCKERD].join('\n'))).toEqual([]);
  });
});

describe('foreignHookChains', () => {
  const chains = (list: object[]): string => JSON.stringify({ nftables: [{ metainfo: { version: '1.0.6' } }, ...list.map((chain) => ({ chain }))] });

  it("keeps base chains of other tables on a bridged frame's hooks; skips iptables' tables, vxnet's, regular chains and other hooks", () => {
    const found = foreignHookChains(chains([
      { family: 'ip', table: 'filter', name: 'FORWARD', handle: 1, type: 'filter', hook: 'forward', prio: 0, policy: 'drop' },
      { family: 'ip', table: 'filter', name: 'DOCKER-USER', handle: 2 },
      { family: 'bridge', table: 'vxnet-policy', name: 'fwd', handle: 3, type: 'filter', hook: 'forward', prio: -200, policy: 'accept' },
      { family: 'inet', table: 'vxnet-policy', name: 'fwd', handle: 4, type: 'filter', hook: 'forward', prio: 0, policy: 'accept' },
      { family: 'inet', table: 'filter', name: 'forward', handle: 5, type: 'filter', hook: 'forward', prio: 0, policy: 'accept' },
      { family: 'inet', table: 'filter', name: 'input', handle: 6, type: 'filter', hook: 'input', prio: 0, policy: 'accept' },
      { family: 'bridge', table: 'mine', name: 'in', handle: 7, type: 'filter', hook: 'input', prio: 0, policy: 'accept' },
      { family: 'ip6', table: 'mine6', name: 'fwd', handle: 8, type: 'filter', hook: 'forward', prio: 0, policy: 'drop' },
      { family: 'ip', table: 'firewalld', name: 'nat_PRE', handle: 9, type: 'nat', hook: 'prerouting', prio: -90, policy: 'accept' },
      { family: 'netdev', table: 'edge', name: 'in', handle: 10, type: 'filter', hook: 'ingress', prio: 0, policy: 'accept' },
    ]));
    expect(found.map((c) => `${c.family} ${c.table} ${c.name}`)).toEqual(['inet filter forward', 'bridge mine in', 'ip firewalld nat_PRE', 'netdev edge in']);
  });

  it('counts the rules of a listed chain', () => {
    const listing = JSON.stringify({ nftables: [{ metainfo: {} }, { table: {} }, { chain: {} }, { rule: { expr: [] } }, { rule: { expr: [] } }] });
    expect(ruleCount(listing)).toBe(2);
    expect(ruleCount(JSON.stringify({ nftables: [{ chain: {} }] }))).toBe(0);
  });
});

describe('ruleset notifications', () => {
  /** One nf_tables notification: nlmsghdr, nfgenmsg (family), then its attributes. */
  function notification(msg: number, family: number, attrs: Buffer[]): Buffer {
    const body = Buffer.concat([Buffer.from([family, 0, 0, 0]), ...attrs]);
    const hdr = Buffer.alloc(16);
    hdr.writeUInt32LE(16 + body.length, 0);
    hdr.writeUInt16LE((10 << 8) | msg, 4);
    return Buffer.concat([hdr, body]);
  }
  const NEWRULE = 6;
  const NEWSETELEM = 12;
  const NEWGEN = 15;

  it("names each message's table, and wakes the check only for changes outside vxnet's tables", () => {
    const rule = notification(NEWRULE, 2, [attr(1, str('filter')), attr(2, str('DOCKER-USER'))]);
    const element = notification(NEWSETELEM, 1, [attr(1, str('vxnet-policy')), attr(2, str('policed_in'))]);
    const gen = notification(NEWGEN, 0, [attr(1, u32(7))]);
    expect(changedTables(Buffer.concat([element, rule, gen]))).toEqual(['1 vxnet-policy', '2 filter']);
    expect(foreignChange(Buffer.concat([element, rule, gen]))).toBe(true);
    expect(foreignChange(Buffer.concat([element, gen]))).toBe(false);
    // Not nf_tables (another subsystem), or cut short: nothing.
    const other = Buffer.from(rule);
    other.writeUInt16LE((1 << 8) | NEWRULE, 4);
    expect(changedTables(other)).toEqual([]);
    expect(changedTables(rule.subarray(0, 10))).toEqual([]);
  });
});
