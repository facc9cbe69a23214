// `vxnet run` with settings it cannot use: it must stop at once, non-zero, with one line on stderr
// that names the setting, and before it touches the store (no data directory, no host record).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { deleteLinks, sh, suffix } from '../helpers/netns';
import { vxnetCli } from '../helpers/vxnet-cli';
import { removeAntispoof, removeFirewall, removePolicyTable, removePortmap } from '../../src/dataplane';

/** Exit codes of main.ts: a setting that cannot work, and anything else (the store). */
const BAD_CONFIG = 2;
const FAILED = 1;

describe('vxnet run refuses settings it cannot use (src/underlay.ts, src/server/socket-dir.ts, src/etcd-settings.ts)', () => {
  let dir: string;
  let settings: Record<string, string>;
  const links: string[] = [];
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vxnet-runfail-'));
  });
  afterAll(async () => {
    deleteLinks(...links);
    fs.rmSync(dir, { recursive: true, force: true });
    // A start that fails after putting its firewall chains in place leaves them: the next test
    // file in this network namespace must find the tables as they were.
    await removeFirewall();
    await removePortmap();
    // And the nftables tables a start puts in place (anti-spoofing closes vxe-* ports it has no
    // entries for).
    await removeAntispoof();
    await removePolicyTable();
  });
  beforeEach(() => {
    const run = fs.mkdtempSync(path.join(dir, 'run-'));
    settings = { VXNET_DATA_DIR: path.join(run, 'data'), VXNET_SOCKET: path.join(run, 'plugins', 'vxnet.sock'), VXNET_LOG_LEVEL: 'info' };
  });

  /** A bridge made here, with the given IPv4 address or none. */
  function link(addr: string | null): string {
    const name = `vxt-rf-${suffix()}`;
    sh('ip', ['link', 'add', name, 'type', 'bridge']);
    links.push(name);
    if (addr) sh('ip', ['addr', 'add', addr, 'dev', name]);
    return name;
  }

  async function expectRefusal(extra: Record<string, string>, code: number, line: RegExp): Promise<void> {
    const r = await vxnetCli(['run'], { ...settings, ...extra });
    expect({ code: r.code, stderr: r.stderr.trim().split('\n') }).toEqual({ code, stderr: [expect.stringMatching(line)] });
    expect(r.stderr.startsWith('vxnet: ')).toBe(true);
  }

  it('VXNET_VTEP_IP that no interface has', async () => {
    await expectRefusal({ VXNET_VTEP_IP: '192.0.2.77' }, BAD_CONFIG, /^vxnet: invalid setting --vtep-ip\/VXNET_VTEP_IP: no interface of this host has 192\.0\.2\.77$/);
    expect(fs.existsSync(settings.VXNET_DATA_DIR)).toBe(false);
  });

  it('VXNET_VTEP_INTERFACE that does not exist', async () => {
    await expectRefusal({ VXNET_VTEP_INTERFACE: 'vxt-nope0' }, BAD_CONFIG, /^vxnet: invalid setting --vtep-interface\/VXNET_VTEP_INTERFACE: this host has no interface vxt-nope0 \(it has .*lo.*\)$/);
  });

  it('VXNET_VTEP_INTERFACE without an IPv4 address', async () => {
    const name = link(null);
    await expectRefusal({ VXNET_VTEP_INTERFACE: name, VXNET_STORE: 'etcd' }, BAD_CONFIG, new RegExp(`^vxnet: invalid setting --vtep-interface/VXNET_VTEP_INTERFACE: ${name} has no IPv4 address$`));
  });

  it('a socket directory that is a file', async () => {
    const file = path.join(path.dirname(settings.VXNET_DATA_DIR), 'plugins');
    fs.writeFileSync(file, '');
    await expectRefusal({}, BAD_CONFIG, new RegExp(`^vxnet: cannot use socket directory ${file} \\(--socket/VXNET_SOCKET\\): it is not a directory$`));
    expect(fs.existsSync(settings.VXNET_DATA_DIR)).toBe(false);
  });

  it('a socket directory that cannot be created (a file on its path)', async () => {
    const file = path.join(path.dirname(settings.VXNET_DATA_DIR), 'file');
    fs.writeFileSync(file, '');
    await expectRefusal({ VXNET_SOCKET: path.join(file, 'plugins', 'vxnet.sock') }, BAD_CONFIG, new RegExp(`^vxnet: cannot use socket directory ${file}/plugins \\(--socket/VXNET_SOCKET\\): ${file} is not a directory$`));
    expect(fs.existsSync(settings.VXNET_DATA_DIR)).toBe(false);
  });

  it('a file where the socket goes', async () => {
    fs.mkdirSync(path.dirname(settings.VXNET_SOCKET));
    fs.writeFileSync(settings.VXNET_SOCKET, 'not a socket');
    await expectRefusal({}, BAD_CONFIG, /\(--socket\/VXNET_SOCKET\): it exists and is not a socket$/);
    expect(fs.readFileSync(settings.VXNET_SOCKET, 'utf8')).toBe('not a socket');
  });

  it('an etcd that does not answer, naming the endpoints and VXNET_ETCD_ENDPOINTS', async () => {
    link('172.31.254.96/32');
    // Port 1 of this test's own namespace: nothing listens there.
    const endpoint = 'http://127.0.0.1:1';
    await expectRefusal(
      { VXNET_STORE: 'etcd', VXNET_VTEP_IP: '172.31.254.96', VXNET_ETCD_ENDPOINTS: endpoint },
      FAILED,
      /^vxnet: could not reach http:\/\/127\.0\.0\.1:1 in etcd: .*; check --etcd-endpoints\/VXNET_ETCD_ENDPOINTS$/,
    );
  }, 20_000);
});
