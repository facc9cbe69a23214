// The host-service files: the systemd unit says what install.sh and docs/install.md promise, and
// the env example names only real settings (and all of them).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SETTINGS } from '../../../src/config';

const DRIVER = path.join(__dirname, '../../../driver');
const UNIT = fs.readFileSync(path.join(DRIVER, 'vxnet.service'), 'utf8');
const ENV_EXAMPLE = fs.readFileSync(path.join(DRIVER, 'vxnet.env.example'), 'utf8');

/** section → key → values, as systemd reads it (repeated keys add values; "#" and ";" start comments). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      current = new Map();
      sections.set(header[1], current);
      continue;
    }
    const eq = line.indexOf('=');
    if (!current || eq < 0) throw new Error(`not a unit line: ${line}`);
    const key = line.slice(0, eq).trim();
    current.set(key, [...(current.get(key) ?? []), ...line.slice(eq + 1).trim().split(/\s+/)]);
  }
  return sections;
}

function onPath(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = path.join(dir, cmd);
    if (fs.existsSync(p)) return p;
  }
  return null;
}

describe('driver/vxnet.service', () => {
  const unit = parseUnit(UNIT);
  const get = (section: string, key: string): string[] => unit.get(section)?.get(key) ?? [];

  it('starts before dockerd and with it', () => {
    expect(get('Unit', 'Before')).toContain('docker.service');
    expect(get('Install', 'WantedBy')).toEqual(expect.arrayContaining(['multi-user.target', 'docker.service']));
    expect(get('Unit', 'After')).toContain('network-online.target');
    expect(get('Unit', 'After')).not.toContain('docker.service');
  });

  it('restarts the driver and reads the installed settings and application', () => {
    expect(get('Service', 'Restart')).toEqual(['always']);
    expect(get('Service', 'EnvironmentFile')).toEqual(['-/etc/vxnet/vxnet.env']);
    expect(get('Service', 'ExecStart')).toEqual(['/usr/bin/node', '/opt/vxnet/dist/src/main.js', 'run']);
  });

  const analyze = onPath('systemd-analyze');
  it(analyze ? 'passes systemd-analyze verify' : 'systemd-analyze is not installed: only the parse above checks the unit', () => {
    if (!analyze) return;
    // As install.sh writes it: with the node that runs here (verify checks that the binary exists).
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vxnet-unit-'));
    try {
      const file = path.join(dir, 'vxnet.service');
      fs.writeFileSync(file, UNIT.replace('/usr/bin/node ', `${process.execPath} `));
      // Unknown keys and bad values are only warnings (exit 0): a clean unit prints nothing at all.
      const r = spawnSync(analyze, ['verify', file], { encoding: 'utf8' });
      expect({ status: r.status, out: `${r.stdout}${r.stderr}`.trim() }).toEqual({ status: 0, out: '' });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('driver/vxnet.env.example', () => {
  const named = new Set([...ENV_EXAMPLE.matchAll(/\bVXNET_[A-Z0-9_]+/g)].map((m) => m[0]));

  it('names only settings that src/config.ts reads', () => {
    const known = new Set(SETTINGS.map((s) => s.env));
    expect([...named].filter((n) => !known.has(n))).toEqual([]);
  });

  it('shows every setting', () => {
    expect(SETTINGS.map((s) => s.env).filter((e) => !named.has(e))).toEqual([]);
  });

  it('sets nothing by default: every setting line is commented out', () => {
    const active = ENV_EXAMPLE.split('\n').filter((l) => /^\s*VXNET_/.test(l));
    expect(active).toEqual([]);
  });
});
