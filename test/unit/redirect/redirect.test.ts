// The redirect fast path's logic against a recording kernel: what each block holds after a pass,
// and the orders correctness rests on (removal before the policy table polices an address, at
// Leave, before additions; a rebuilt VXLAN device or a failed change set rebuilds the block), and
// what each kind of pass looks at (one network, the local ports, every device).
// The tc lines themselves are checked in redirect-block.test.ts, the kernel's behaviour in
// test/e2e/redirect.test.ts.
import pino from 'pino';
import { RedirectPaths, DecidedEndpoint, freeNode, policedAddresses } from '../../../src/redirect';
import type { RedirectOp } from '../../../src/dataplane/redirect-block';
import type { EndpointRecord, NetworkRecord } from '../../../src/network/records';
import { vethNames } from '../../../src/network/names';
import { emptyPolicySets } from '../../../src/dataplane/policy-table';

const silent = pino({ level: 'silent' });
const NET: NetworkRecord = { lnet: 'n1', vni: 300, ipv4: { subnet: '10.5.0.0/24', gateway: '10.5.0.1', poolId: null }, ipv6: null, mtu: 1450, internal: false };
const NET2: NetworkRecord = { ...NET, lnet: 'n2', vni: 301, ipv4: { subnet: '10.6.0.0/24', gateway: '10.6.0.1', poolId: null } };

function endpoint(id: string, ip: string, host = 'h1'): EndpointRecord {
  const o = ip.split('.').map((x) => Number(x).toString(16).padStart(2, '0'));
  return { host, mac: `02:42:${o.join(':')}`, ipv4: `${ip}/24`, ipv6: null, vtep: '192.0.2.1' } as unknown as EndpointRecord;
}

class World {
  decided: DecidedEndpoint[] = [];
  recs = new Map<string, EndpointRecord>();
  remote: string[] = [];
  /** n2's remote MACs (n2 is active once `nets` names it) */
  remote2: string[] = [];
  nets = ['n1'];
  links = new Map<string, number>([['vxv-300', 10], ['vxv-301', 12]]);
  /** every device the paths read, in order */
  reads: string[] = [];
  ops: RedirectOp[][] = [];
  failNext = false;
  paths: RedirectPaths;

  constructor(opts: { paused?: boolean } = {}) {
    this.paths = new RedirectPaths({
      decided: () => this.decided,
      records: { endpoint: (_l, id) => this.recs.get(id), network: (l) => (l === 'n1' ? NET : l === 'n2' ? NET2 : undefined) },
      peers: { activeNetworks: () => this.nets, remoteMacs: (l) => (l === 'n1' ? this.remote : this.remote2) },
      kernel: {
        apply: async (ops) => {
          if (this.failNext) {
            this.failNext = false;
            throw new Error('tc refused');
          }
          this.ops.push(ops);
        },
        ifindex: async (name) => {
          this.reads.push(name);
          return this.links.get(name) ?? null;
        },
      },
      log: silent,
    }, opts);
  }

  join(id: string, ip: string, ifindex: number, lnet = 'n1'): void {
    const rec = endpoint(id, ip);
    this.recs.set(id, rec);
    this.decided.push({ lnet, endpointId: id, ip: rec.ipv4, ip6: null });
    this.links.set(vethNames(id).host, ifindex);
  }

  /** The operations of the last change set, as "op mac-or-port". */
  last(): string[] {
    return (this.ops[this.ops.length - 1] ?? []).map(show);
  }

  all(): string[] {
    return this.ops.flat().map(show);
  }
}

function show(o: RedirectOp): string {
  switch (o.op) {
    case 'setup':
      return `setup ${o.vxv}`;
    case 'attach':
      return `attach ${o.dev}`;
    case 'detach':
      return `detach ${o.dev}`;
    case 'flush':
      return 'flush';
    case 'add-port':
    case 'del-port':
      return `${o.op} ${o.entry.port} ${o.entry.ip}`;
    default:
      return `${o.op} ${o.entry.mac} ${o.entry.dev}`;
  }
}

/** Until every pass scheduled so far has run (each waits a turn of the event loop). */
async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}

const A = vethNames('aaaaaaaaaaaa').host;
const B = vethNames('bbbbbbbbbbbb').host;

describe('RedirectPaths', () => {
  it('builds the block, then adds only what changed; a local MAC is never sent to the tunnel', async () => {
    const w = new World();
    w.join('aaaaaaaaaaaa', '10.5.0.2', 20);
    w.remote = ['02:42:0a:05:00:09', '02:42:0a:05:00:02'];
    await w.paths.sync();
    expect(w.last()).toEqual([
      'setup vxv-300',
      `attach ${A}`,
      `add-port ${A} 10.5.0.2`,
      `add-local 02:42:0a:05:00:02 ${A}`,
      'add-remote 02:42:0a:05:00:09 vxv-300',
    ]);
    w.join('bbbbbbbbbbbb', '10.5.0.3', 21);
    w.remote = ['02:42:0a:05:00:0a'];
    await w.paths.sync();
    // Removals first, then additions.
    expect(w.last()).toEqual([
      'del-remote 02:42:0a:05:00:09 vxv-300',
      `attach ${B}`,
      `add-port ${B} 10.5.0.3`,
      `add-local 02:42:0a:05:00:03 ${B}`,
      'add-remote 02:42:0a:05:00:0a vxv-300',
    ]);
    const before = w.ops.length;
    await w.paths.sync();
    expect(w.ops.length).toBe(before);
  });

  it('skips policed containers, and removes an address\'s entries before the table polices it', async () => {
    const w = new World();
    w.join('aaaaaaaaaaaa', '10.5.0.2', 20);
    w.join('bbbbbbbbbbbb', '10.5.0.3', 21);
    w.paths.policyApplied(['10.5.0.3']);
    await w.paths.sync();
    expect(w.all().filter((o) => o.startsWith('add-port'))).toEqual([`add-port ${A} 10.5.0.2`]);
    await w.paths.policyApplying(policedAddresses({ ...emptyPolicySets(), policedIn: ['10.5.0.3'], policedOut: ['10.5.0.2'] }));
    expect(w.last()).toEqual([`del-port ${A} 10.5.0.2`, `del-local 02:42:0a:05:00:02 ${A}`]);
    // While the change is applied nothing of A comes back; once A is unpoliced again it does.
    await w.paths.sync();
    expect(w.last()).toEqual([`del-port ${A} 10.5.0.2`, `del-local 02:42:0a:05:00:02 ${A}`]);
    w.paths.policyApplied(['10.5.0.3']);
    await w.paths.sync();
    expect(w.last()).toEqual([`attach ${A}`, `add-port ${A} 10.5.0.2`, `add-local 02:42:0a:05:00:02 ${A}`]);
    // A container whose IPv6 address alone becomes policed loses its entries too.
    w.decided[0] = { ...w.decided[0], ip6: 'fd00::2' };
    w.paths.policyApplied(['10.5.0.3']);
    await w.paths.sync();
    await w.paths.policyApplying(['10.5.0.3', 'fd00::2']);
    expect(w.last()).toEqual([`del-port ${A} 10.5.0.2`, `del-local 02:42:0a:05:00:02 ${A}`]);
  });

  it('forget (Leave) removes the port at once and keeps it away while its endpoint is still decided', async () => {
    const w = new World();
    w.join('aaaaaaaaaaaa', '10.5.0.2', 20);
    await w.paths.sync();
    await w.paths.forget('aaaaaaaaaaaa');
    expect(w.last()).toEqual([`del-port ${A} 10.5.0.2`, `del-local 02:42:0a:05:00:02 ${A}`]);
    const n = w.ops.length;
    await w.paths.sync();
    expect(w.ops.length).toBe(n);
    // The endpoint is gone, a new one with the same address joins: it gets its entries.
    w.decided = [];
    await w.paths.sync();
    w.join('cccccccccccc', '10.5.0.2', 22);
    await w.paths.sync();
    expect(w.last()).toContain(`add-local 02:42:0a:05:00:02 ${vethNames('cccccccccccc').host}`);
  });

  it('builds no block until it has an entry, waits for a port that does not exist yet, and rebuilds the block for a new VXLAN device or after a failure (emptying it at once)', async () => {
    const w = new World();
    w.join('aaaaaaaaaaaa', '10.5.0.2', 20);
    w.links.delete(A);
    await w.paths.sync();
    // Nothing to redirect yet: no block is built (no tc process).
    expect(w.ops).toEqual([]);
    w.links.set(A, 20);
    await w.paths.sync();
    expect(w.last()).toEqual(['setup vxv-300', `attach ${A}`, `add-port ${A} 10.5.0.2`, `add-local 02:42:0a:05:00:02 ${A}`]);
    w.links.set('vxv-300', 11);
    await w.paths.sync();
    expect(w.last()[0]).toBe('setup vxv-300');
    expect(w.last()).toContain(`add-port ${A} 10.5.0.2`);
    w.remote = ['02:42:0a:05:00:09'];
    w.failNext = true;
    const n = w.ops.length;
    await w.paths.sync();
    // The refused change set may be half in (tc ran its other lines): the block is emptied.
    expect(w.ops.length).toBe(n + 1);
    expect(w.last()).toEqual(['flush']);
    await w.paths.sync();
    expect(w.last()).toEqual(['setup vxv-300', `attach ${A}`, `add-port ${A} 10.5.0.2`, `add-local 02:42:0a:05:00:02 ${A}`, 'add-remote 02:42:0a:05:00:09 vxv-300']);
  });

  it('a pass over one network reads only its device; a policy change reads a device only for a block that changes', async () => {
    const w = new World();
    w.nets = ['n1', 'n2'];
    w.join('aaaaaaaaaaaa', '10.5.0.2', 20);
    w.join('bbbbbbbbbbbb', '10.6.0.2', 21, 'n2');
    w.remote = ['02:42:0a:05:00:09'];
    await w.paths.sync();
    expect(w.reads.sort()).toEqual(['vxv-300', 'vxv-301', A, B].sort());
    // The peer table's pass over n2: n1's device and entries are not looked at.
    w.reads = [];
    w.remote = ['02:42:0a:05:00:0a'];
    w.remote2 = ['02:42:0a:06:00:09'];
    const n = w.ops.length;
    await w.paths.sync('n2');
    expect(w.reads).toEqual(['vxv-301']);
    expect(w.ops.slice(n).flat().map(show)).toEqual(['add-remote 02:42:0a:06:00:09 vxv-301']);
    // A policy change that changes no port: no kernel call at all.
    w.reads = [];
    const m = w.ops.length;
    w.paths.policyApplied([]);
    await flush();
    expect(w.reads).toEqual([]);
    expect(w.ops.length).toBe(m);
    // A new container on n1: its port is read, and n1's device before the batch; n1's remote
    // entries stay as they were (only the peer table's pass over n1 changes them).
    w.join('cccccccccccc', '10.5.0.3', 22);
    w.paths.policyApplied([]);
    await flush();
    expect(w.reads).toEqual([vethNames('cccccccccccc').host, 'vxv-300']);
    expect(w.last()).toEqual([`attach ${vethNames('cccccccccccc').host}`, `add-port ${vethNames('cccccccccccc').host} 10.5.0.3`, `add-local 02:42:0a:05:00:03 ${vethNames('cccccccccccc').host}`]);
  });

  it('a reconcile rebuilds only the block whose device was replaced; a policy pass that finds one replaced defers to a full pass', async () => {
    const w = new World();
    w.nets = ['n1', 'n2'];
    w.join('aaaaaaaaaaaa', '10.5.0.2', 20);
    w.join('bbbbbbbbbbbb', '10.6.0.2', 21, 'n2');
    await w.paths.sync();
    const n = w.ops.length;
    await w.paths.sync();
    expect(w.ops.length).toBe(n);
    w.links.set('vxv-301', 13);
    await w.paths.sync();
    expect(w.ops.slice(n).flat().map(show)).toEqual(['setup vxv-301', `attach ${B}`, `add-port ${B} 10.6.0.2`, `add-local 02:42:0a:06:00:02 ${B}`]);
    // n1's device replaced, seen by a policy pass that adds a port: nothing of the change set is
    // applied on the old block; the pass it schedules rebuilds n1 in full.
    w.links.set('vxv-300', 14);
    w.join('cccccccccccc', '10.5.0.3', 22);
    const m = w.ops.length;
    w.paths.policyApplied([]);
    await flush();
    await flush();
    expect(w.ops.slice(m).flat().map(show)).toEqual(['setup vxv-300', `attach ${A}`, `add-port ${A} 10.5.0.2`, `add-local 02:42:0a:05:00:02 ${A}`, `attach ${vethNames('cccccccccccc').host}`, `add-port ${vethNames('cccccccccccc').host} 10.5.0.3`, `add-local 02:42:0a:05:00:03 ${vethNames('cccccccccccc').host}`]);
  });

  it('paused (--fast-path auto, suspended), builds nothing; pause empties every block; resume rebuilds each in full after what was queued', async () => {
    const w = new World({ paused: true });
    w.join('aaaaaaaaaaaa', '10.5.0.2', 20);
    w.remote = ['02:42:0a:05:00:09'];
    await w.paths.sync();
    w.paths.policyApplied([]);
    await flush();
    expect(w.ops).toEqual([]);
    expect(w.paths.entries()).toEqual([]);
    w.paths.resume();
    await flush();
    expect(w.last()).toEqual(['setup vxv-300', `attach ${A}`, `add-port ${A} 10.5.0.2`, `add-local 02:42:0a:05:00:02 ${A}`, 'add-remote 02:42:0a:05:00:09 vxv-300']);
    expect(w.paths.entries()).toEqual([{ lnet: 'n1', ports: 1, remote: 1 }]);
    // Resolves once the kernel holds no entry; passes asked for meanwhile wait for resume.
    await w.paths.pause();
    expect(w.last()).toEqual(['flush']);
    expect(w.paths.entries()).toEqual([]);
    const count = w.ops.length;
    w.join('bbbbbbbbbbbb', '10.5.0.3', 21);
    await w.paths.sync('n1');
    expect(w.ops.length).toBe(count);
    // A resume right after a pause (a rule added and taken away at once) ends built, not paused.
    void w.paths.pause();
    w.paths.resume();
    await flush();
    expect(w.last()).toEqual(['setup vxv-300', `attach ${A}`, `add-port ${A} 10.5.0.2`, `add-local 02:42:0a:05:00:02 ${A}`, `attach ${B}`, `add-port ${B} 10.5.0.3`, `add-local 02:42:0a:05:00:03 ${B}`, 'add-remote 02:42:0a:05:00:09 vxv-300']);
  });

  it('hands out the lowest free node of a bucket', () => {
    expect(freeNode(undefined)).toBe(1);
    expect(freeNode(new Set([1, 2, 4]))).toBe(3);
  });
});
