// `vxnet doctor` (the built CLI) on hosts made of namespaces: a single host with a FORWARD-DROP
// firewall before and after its driver starts, and a host with etcd and a peer VTEP behind a
// veth pair whose MTU the test controls. Pings go only to the peer namespace made here.
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import type { CheckResult } from '../../src/doctor';
import { EtcdStore } from '../../src/store/etcd';
import { startEtcd, EtcdProcess } from '../helpers/etcd';
import { eventually } from '../helpers/eventually';
import { addNetns, deleteLinks, deleteNetns, inNetns, sh, suffix } from '../helpers/netns';
import { MAIN_JS } from '../helpers/vxnet-in-host';
import { cliEnv, vxnetCli } from '../helpers/vxnet-cli';

interface Report {
  code: number | null;
  checks: Record<string, CheckResult>;
}

async function doctor(settings: Record<string, string>, netns?: string): Promise<Report> {
  const r = await vxnetCli(['doctor', '--json'], settings, { netns });
  let parsed: { ok: boolean; checks: CheckResult[] };
  try {
    parsed = JSON.parse(r.stdout);
  } catch {
    throw new Error(`vxnet doctor printed no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  expect(parsed.ok).toBe(r.code === 0);
  return { code: r.code, checks: Object.fromEntries(parsed.checks.map((c) => [c.name, c])) };
}

/** A dockerd stand-in on a Unix socket of the test's own: the doctor asks only for the version. */
async function fakeDockerd(socket: string): Promise<http.Server> {
  const srv = http.createServer((req, res) => {
    res.setHeader('Content-Type', 'application/json');
    if (req.url?.endsWith('/version')) return void res.end(JSON.stringify({ Version: '20.10.24', ApiVersion: '1.41' }));
    res.statusCode = 404;
    res.end('{}');
  });
  await new Promise<void>((resolve) => srv.listen(socket, () => resolve()));
  return srv;
}

describe('vxnet doctor (src/doctor)', () => {
  let dir: string;
  let dockerd: http.Server;
  let base: Record<string, string>;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vxnet-doctor-'));
    dockerd = await fakeDockerd(path.join(dir, 'docker.sock'));
  });
  afterAll(async () => {
    await new Promise((r) => dockerd.close(r));
    fs.rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    const run = fs.mkdtempSync(path.join(dir, 'run-'));
    base = {
      VXNET_DATA_DIR: path.join(run, 'data'),
      VXNET_SOCKET: path.join(run, 'plugins', 'vxnet.sock'),
      VXNET_DOCKER_HOST: `unix://${path.join(dir, 'docker.sock')}`,
      VXNET_LOG_LEVEL: 'warn',
    };
  });

  describe('a single host whose FORWARD policy is DROP', () => {
    let ns: string;
    let driver: ChildProcess | null = null;
    beforeEach(() => {
      ns = addNetns('vxt-doc');
      inNetns(ns, 'ip', ['link', 'set', 'lo', 'up']);
      inNetns(ns, 'iptables', ['-w', '-P', 'FORWARD', 'DROP']);
    });
    afterEach(async () => {
      if (driver && driver.exitCode === null) {
        const gone = new Promise((r) => driver!.once('exit', r));
        driver.kill('SIGTERM');
        await gone;
      }
      driver = null;
      deleteNetns(ns);
    });

    it('before and after the driver starts, and with a bridge whose rules are gone', async () => {
      expect((await doctor(base, ns)).checks['default-pools']).toMatchObject({ status: 'PASS', detail: 'default pools 10.128.0.0/9:24 overlap no route of this host' });
      // A route into the default pools (a VPN, another overlay) is worth a warning, not a failure.
      inNetns(ns, 'ip', ['route', 'add', '10.128.7.0/24', 'dev', 'lo']);
      const before = await doctor(base, ns);
      expect(before.checks['default-pools']).toMatchObject({ status: 'WARN', detail: expect.stringContaining('10.128.0.0/9 overlaps 10.128.7.0/24 (dev lo)'), fix: expect.stringContaining('VXNET_DEFAULT_POOLS') });
      expect(before.code).toBe(0);
      expect(before.checks.modules.status).toBe('PASS');
      expect(before.checks.kernel).toMatchObject({ status: 'PASS', detail: expect.stringContaining('created and deleted in a throwaway network namespace') });
      expect(before.checks['underlay-mtu'].status).toBe('PASS'); // single host: no tunnel to carry
      expect(before.checks.dockerd).toMatchObject({ status: 'PASS', detail: expect.stringContaining('dockerd 20.10.24 (API 1.41)') });
      expect(before.checks.socket).toMatchObject({ status: 'WARN', detail: expect.stringContaining('the driver is not running') });
      expect(before.checks.forward).toMatchObject({ status: 'WARN', detail: 'FORWARD policy DROP and no VXNET-ISOLATION chain; the driver is not running' });
      expect(before.checks.antispoof).toMatchObject({ status: 'WARN', detail: 'no table bridge vxnet-antispoof; the driver is not running' });
      // A fresh namespace forwards nothing: egress and published ports would not work.
      expect(before.checks['ip-forward']).toMatchObject({ status: 'WARN', detail: expect.stringContaining('net.ipv4.ip_forward=0') });
      // The probe's namespace went with its process: nothing was left in this one.
      expect(inNetns(ns, 'ip', ['-o', 'link']).trim().split('\n')).toHaveLength(1);

      driver = spawn('ip', ['netns', 'exec', ns, process.execPath, MAIN_JS, 'run'], { env: cliEnv(base), stdio: 'ignore' });
      await eventually('the driver listens', () => fs.existsSync(base.VXNET_SOCKET), 10_000, 50);
      const running = await doctor(base, ns);
      expect(running.code).toBe(0);
      expect(running.checks.socket).toMatchObject({ status: 'PASS', detail: expect.stringContaining('owner root, mode 0600') });
      expect(running.checks['socket-dir'].status).toBe('PASS');
      expect(running.checks.store).toMatchObject({ status: 'PASS', detail: expect.stringContaining(`in use by the running driver (pid ${driver.pid})`) });
      // The driver puts its constant chain in place when it starts, before any network.
      expect(running.checks.forward).toMatchObject({ status: 'PASS', detail: expect.stringMatching(/VXNET-ISOLATION \(9 rules, whatever the number of networks\) is in place/) });
      expect(running.checks.antispoof).toMatchObject({ status: 'PASS', detail: expect.stringContaining('table bridge vxnet-antispoof is in place') });

      inNetns(ns, 'ip', ['link', 'add', 'vxb-4000', 'type', 'bridge']);
      inNetns(ns, 'iptables', ['-w', '-D', 'FORWARD', '-m', 'comment', '--comment', 'vxnet', '-j', 'VXNET-ISOLATION']);
      const broken = await doctor(base, ns);
      expect(broken.code).toBe(1);
      expect(broken.checks.forward).toMatchObject({
        status: 'FAIL',
        detail: expect.stringContaining('neither FORWARD nor DOCKER-USER jumps to VXNET-ISOLATION, yet vxnet bridges exist (vxb-4000)'),
        fix: expect.stringContaining('vxnet reconcile'),
      });

      // A container port without the anti-spoofing table: the check fails and says how to fix it.
      inNetns(ns, 'ip', ['link', 'add', 'vxe-doctor01', 'type', 'veth', 'peer', 'name', 'vxc-doctor01']);
      inNetns(ns, 'nft', ['delete', 'table', 'bridge', 'vxnet-antispoof']);
      const unguarded = await doctor(base, ns);
      expect(unguarded.checks.antispoof).toMatchObject({
        status: 'FAIL',
        detail: 'no table bridge vxnet-antispoof, yet 1 container port(s) exist: containers can spoof addresses',
        fix: expect.stringContaining('vxnet reconcile'),
      });
    }, 60_000);

    it('prints one line per check and a count', async () => {
      const r = await vxnetCli(['doctor'], base, { netns: ns });
      const lines = r.stdout.trim().split('\n');
      expect(lines.slice(0, -1).every((l) => /^(PASS|WARN|FAIL) {2}\S+ +\S/.test(l))).toBe(true);
      expect(lines.map((l) => l.split(/\s+/)[1]).slice(0, 3)).toEqual(['modules', 'kernel', 'vtep']);
      expect(lines[lines.length - 1]).toMatch(/^\d+ passed, \d+ warned, 0 failed$/);
      expect(r.code).toBe(0);
    }, 30_000);
  });

  describe('a host with etcd and a peer VTEP', () => {
    const SELF_IP = '172.31.254.96';
    const PEER_IP = '172.31.254.97';
    let etcd: EtcdProcess;
    let store: EtcdStore;
    let peerNs: string;
    let ours: string;
    let theirs: string;
    let prefix: string;
    let settings: Record<string, string>;
    beforeAll(async () => {
      etcd = await startEtcd();
      prefix = `/vxt-doctor-${suffix()}/`;
      store = await EtcdStore.open({ endpoints: [etcd.endpoint], prefix });
      for (const [host, vtep] of [['vxt-q1', SELF_IP], ['vxt-q2', PEER_IP]]) {
        await store.createIfAbsent(`${prefix}hosts/${host}`, JSON.stringify({ vtep, version: 'test' }));
      }
      // This namespace plays vxt-q1, a namespace of the test's plays vxt-q2, one veth between them.
      const s = suffix();
      ours = `vxtq1-${s}`;
      theirs = `vxtq2-${s}`;
      peerNs = addNetns('vxt-docp');
      sh('ip', ['link', 'add', ours, 'type', 'veth', 'peer', 'name', theirs]);
      sh('ip', ['link', 'set', theirs, 'netns', peerNs]);
      sh('ip', ['addr', 'add', `${SELF_IP}/24`, 'dev', ours]);
      sh('ip', ['link', 'set', ours, 'up']);
      inNetns(peerNs, 'ip', ['addr', 'add', `${PEER_IP}/24`, 'dev', theirs]);
      inNetns(peerNs, 'ip', ['link', 'set', theirs, 'up']);
      inNetns(peerNs, 'ip', ['link', 'set', 'lo', 'up']);
    }, 30_000);
    afterAll(async () => {
      await store?.close();
      await etcd?.stop();
      deleteLinks(ours);
      deleteNetns(peerNs);
    });
    beforeEach(() => {
      settings = {
        ...base,
        VXNET_STORE: 'etcd',
        VXNET_ETCD_ENDPOINTS: etcd.endpoint,
        VXNET_ETCD_PREFIX: prefix,
        VXNET_HOST_ID: 'vxt-q1',
        VXNET_VTEP_IP: SELF_IP,
        VXNET_MTU: '1450',
      };
    });

    it('passes a path that carries full-size frames', async () => {
      const r = await doctor(settings);
      expect(r.checks.vtep).toMatchObject({ status: 'PASS', detail: `${SELF_IP} on ${ours}` });
      expect(r.checks['underlay-mtu']).toMatchObject({ status: 'PASS', detail: `${ours} MTU 1500 carries VXNET_MTU 1450 + 50 bytes of VXLAN` });
      expect(r.checks.store).toMatchObject({ status: 'PASS', detail: expect.stringMatching(/answers: 5 reads p50 [\d.]+ ms, max [\d.]+ ms$/) });
      expect(r.checks['vtep-path']).toMatchObject({ status: 'PASS', detail: expect.stringContaining(`1 host(s) answer 1500-byte packets`) });
      expect(r.checks['vtep-path'].detail).toContain(`from ${SELF_IP}: vxt-q2 `);
    }, 30_000);

    it('fails a path narrower than inner MTU + 50, and says which MTU to lower', async () => {
      inNetns(peerNs, 'ip', ['link', 'set', theirs, 'mtu', '1400']);
      try {
        const r = await doctor(settings);
        expect(r.code).toBe(1);
        expect(r.checks['vtep-path']).toMatchObject({
          status: 'FAIL',
          detail: expect.stringContaining(`vxt-q2 (${PEER_IP}) answer small pings but not 1500-byte packets`),
          fix: expect.stringContaining('lower VXNET_MTU'),
        });
      } finally {
        inNetns(peerNs, 'ip', ['link', 'set', theirs, 'mtu', '1500']);
      }
    }, 30_000);

    it('fails an underlay whose MTU cannot carry VXNET_MTU + 50', async () => {
      const r = await doctor({ ...settings, VXNET_MTU: '1480' });
      expect(r.checks['underlay-mtu']).toMatchObject({ status: 'FAIL', fix: `lower VXNET_MTU to 1450, or raise the MTU of ${ours} to 1530 (ip link set dev ${ours} mtu 1530)` });
    }, 30_000);

    it('fails a registered host that does not answer at all', async () => {
      const key = `${prefix}hosts/vxt-q3`;
      // .98 exists in no namespace: the request dies on the veth made here.
      await store.createIfAbsent(key, JSON.stringify({ vtep: '172.31.254.98', version: 'test' }));
      try {
        const r = await doctor(settings);
        expect(r.checks['vtep-path']).toMatchObject({ status: 'FAIL', detail: `no answer to ping from vxt-q3 (172.31.254.98) (sent from ${SELF_IP})` });
      } finally {
        await store.delete(key);
      }
    }, 30_000);

    it('fails an etcd that does not answer, naming VXNET_ETCD_ENDPOINTS, and probes nothing', async () => {
      const r = await doctor({ ...settings, VXNET_ETCD_ENDPOINTS: 'http://127.0.0.1:1' });
      expect(r.code).toBe(1);
      expect(r.checks.store).toMatchObject({ status: 'FAIL', detail: expect.stringContaining('http://127.0.0.1:1'), fix: expect.stringContaining('VXNET_ETCD_ENDPOINTS') });
      expect(r.checks['vtep-path']).toMatchObject({ status: 'WARN', detail: expect.stringContaining('not probed') });
    }, 30_000);
  });
});
