// driver/install.sh into a temporary root (DESTDIR), and once with every path in a temporary
// folder so the installed CLI can run: files land with the right modes, settings survive a
// reinstall, only production packages are copied, and systemd is left alone here.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT, run } from '../helpers/hosts';
import { cliEnv } from '../helpers/vxnet-cli';
import { DRIVER_NODE_OPTIONS } from '../../src/node-options';

const INSTALL_SH = path.join(REPO_ROOT, 'driver/install.sh');

async function install(vars: Record<string, string>): Promise<string> {
  const r = await run('bash', [INSTALL_SH], { env: cliEnv(vars), timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`install.sh failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

function mode(file: string): string {
  return (fs.statSync(file).mode & 0o7777).toString(8).padStart(4, '0');
}

describe('driver/install.sh', () => {
  let root: string;
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'vxnet-install-'));
  });
  afterEach(() => {
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('stages the application, CLI, unit and settings under DESTDIR', async () => {
    const out = await install({ DESTDIR: root, NODE: process.execPath });
    const f = (p: string): string => path.join(root, p);
    expect(mode(f('opt/vxnet'))).toBe('0755');
    expect(mode(f('opt/vxnet/dist/src/main.js'))).toBe('0644');
    expect(mode(f('usr/local/bin/vxnet'))).toBe('0755');
    expect(mode(f('etc/systemd/system/vxnet.service'))).toBe('0644');
    expect(mode(f('etc/vxnet/vxnet.env'))).toBe('0600');
    for (const p of ['opt/vxnet', 'opt/vxnet/dist/src/main.js', 'etc/vxnet/vxnet.env']) expect(fs.statSync(f(p)).uid).toBe(0);
    expect(fs.readFileSync(f('etc/vxnet/vxnet.env'), 'utf8')).toBe(fs.readFileSync(path.join(REPO_ROOT, 'driver/vxnet.env.example'), 'utf8'));
    const unit = fs.readFileSync(f('etc/systemd/system/vxnet.service'), 'utf8');
    expect(unit).toContain(`ExecStart=${process.execPath} /opt/vxnet/dist/src/main.js run`);
    expect(fs.readFileSync(f('usr/local/bin/vxnet'), 'utf8')).toContain(`exec ${process.execPath} /opt/vxnet/dist/src/main.js "$@"`);
    // node's flags for the driver (src/node-options.ts), unless vxnet.env gives NODE_OPTIONS.
    expect(fs.readFileSync(f('usr/local/bin/vxnet'), 'utf8')).toContain(`export NODE_OPTIONS="\${NODE_OPTIONS:-${DRIVER_NODE_OPTIONS}}"`);
    expect(unit).toContain(`Environment=NODE_OPTIONS=${DRIVER_NODE_OPTIONS}\nEnvironmentFile=-/etc/vxnet/vxnet.env`);
    // Production packages only; nothing of the build or test tools, no leftover staging folder.
    const modules = fs.readdirSync(f('opt/vxnet/node_modules'));
    expect(modules).toEqual(expect.arrayContaining(['netlink', 'fastify', 'etcd3', 'dockerode', 'pino']));
    expect(modules).not.toEqual(expect.arrayContaining(['jest']));
    expect(modules).not.toContain('typescript');
    expect(fs.readdirSync(f('opt')).sort()).toEqual(['vxnet']);
    expect(out).toContain('systemd is not running here (or DESTDIR is set): nothing was reloaded or started.');
    // The staged application runs (native netlink binding included).
    const help = spawnSync(process.execPath, [f('opt/vxnet/dist/src/main.js'), 'help'], { encoding: 'utf8' });
    expect(help.stdout).toContain('vxnet doctor');
    const loads = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(f('opt/vxnet/dist/src/daemon.js'))}); require(${JSON.stringify(f('opt/vxnet/node_modules/netlink'))})`]);
    expect(loads.status).toBe(0);
  }, 180_000);

  it('keeps existing settings on a reinstall and puts the new example beside them', async () => {
    await install({ DESTDIR: root, NODE: process.execPath });
    const env = path.join(root, 'etc/vxnet/vxnet.env');
    fs.writeFileSync(env, 'VXNET_MTU=1400\n');
    fs.writeFileSync(path.join(root, 'opt/vxnet/stale-file'), '');
    const out = await install({ DESTDIR: root, NODE: process.execPath });
    expect(fs.readFileSync(env, 'utf8')).toBe('VXNET_MTU=1400\n');
    expect(fs.existsSync(path.join(root, 'etc/vxnet/vxnet.env.example'))).toBe(true);
    expect(out).toContain('kept /etc/vxnet/vxnet.env');
    // The application is replaced whole, not merged into the old one.
    expect(fs.existsSync(path.join(root, 'opt/vxnet/stale-file'))).toBe(false);
  }, 180_000);

  it('honours PREFIX and friends; the installed CLI reads the installed settings', async () => {
    const vars = {
      PREFIX: path.join(root, 'app'),
      BINDIR: path.join(root, 'bin'),
      SYSCONFDIR: path.join(root, 'etc'),
      UNITDIR: path.join(root, 'units'),
      NODE: process.execPath,
    };
    await install(vars);
    const unit = fs.readFileSync(path.join(vars.UNITDIR, 'vxnet.service'), 'utf8');
    expect(unit).toContain(`ExecStart=${process.execPath} ${vars.PREFIX}/dist/src/main.js run`);
    expect(unit).toContain(`Documentation=file://${vars.PREFIX}/docs/install.md`);
    expect(unit).toContain(`EnvironmentFile=-${vars.SYSCONFDIR}/vxnet.env`);
    // A setting in the env file reaches the CLI: a bad one stops `vxnet doctor` before any check.
    fs.writeFileSync(path.join(vars.SYSCONFDIR, 'vxnet.env'), 'VXNET_MTU=abc\n');
    const r = await run(path.join(vars.BINDIR, 'vxnet'), ['doctor'], { env: cliEnv({}), timeoutMs: 30_000 });
    expect({ code: r.code, stderr: r.stderr.trim() }).toEqual({ code: 2, stderr: 'vxnet: invalid setting --mtu/VXNET_MTU: "abc" is not a whole number' });
    const analyze = spawnSync('systemd-analyze', ['verify', path.join(vars.UNITDIR, 'vxnet.service')], { encoding: 'utf8' });
    if (analyze.error) return; // no systemd-analyze here: the unit's content was checked above
    expect({ status: analyze.status, out: `${analyze.stdout}${analyze.stderr}`.trim() }).toEqual({ status: 0, out: '' });
  }, 180_000);

  it('refuses relative paths before touching anything', async () => {
    const r = await run('bash', [INSTALL_SH], { env: cliEnv({ DESTDIR: root, PREFIX: 'opt/vxnet' }) });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('opt/vxnet is not an absolute path');
    expect(fs.readdirSync(root)).toEqual([]);
  });
});
