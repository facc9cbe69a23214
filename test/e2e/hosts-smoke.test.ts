// Smoke test of the e2e infrastructure: one simulated host per Docker version on a private underlay.
// Run: npx jest --selectProjects e2e -- test/e2e/hosts-smoke   (root; scripts/install-deps.sh first)
// (without `--`, jest takes the path as a second project name and runs every e2e file)
// Underlay addresses .201/.202 are this file's; other e2e files must use others (host.sh refuses
// an address that a running host already has).
import * as fs from 'fs';
import { Host, upHost, downHost, underlayUp, underlayDown, startInHost, stopInHost, HostProcess } from '../helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../helpers/image';

jest.setTimeout(180_000);

const VERSIONS = [
  { docker: '20' as const, name: 'vxt-smoke20', ip: '172.31.254.201', expect: /^20\.10\./ },
  { docker: '26' as const, name: 'vxt-smoke26', ip: '172.31.254.202', expect: /^26\.1\./ },
];
const hosts: Record<string, Host> = {};
const timings: string[] = [];

async function timed<T>(label: string, f: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try {
    return await f();
  } finally {
    timings.push(`${label}: ${Date.now() - t0} ms`);
  }
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('e2e tests need root');
  await underlayUp();
  for (const v of VERSIONS) {
    hosts[v.docker] = await timed(`up docker ${v.docker}`, () => upHost(v.name, v.ip, { docker: v.docker }));
  }
});

afterAll(async () => {
  for (const v of VERSIONS) {
    if (hosts[v.docker]) await timed(`down docker ${v.docker}`, () => downHost(hosts[v.docker]));
    else await downHost(v.name).catch(() => undefined);
  }
  await underlayDown();
  // eslint-disable-next-line no-console
  console.log(`host timings:\n  ${timings.join('\n  ')}`);
});

describe.each(VERSIONS)('host with docker $docker', (v) => {
  const h = () => hosts[v.docker];

  test('docker version', async () => {
    const server = await h().dockerOk(['version', '--format', '{{.Server.Version}}']);
    expect(server).toMatch(v.expect);
    expect(h().dockerdPid).toBeGreaterThan(0);
    expect(h().nsPid).toBeGreaterThan(0);
    expect(await h().execOk(['hostname'])).toBe(v.name);
  });

  test('test image builds and runs (--network none)', async () => {
    await timed(`image docker ${v.docker}`, () => ensureTestImage(h()));
    await ensureTestImage(h()); // idempotent
    const out = await timed(`docker run docker ${v.docker}`, () =>
      h().dockerOk(['run', '--rm', '--network', 'none', TEST_IMAGE, 'sh', '-c', 'echo hi']));
    expect(out).toBe('hi');
  });

  test('real-host traps: FORWARD DROP, bridge-nf-call-iptables, no default route', async () => {
    const fwd = await h().execOk(['iptables', '-S', 'FORWARD']);
    expect(fwd.split('\n')[0]).toBe('-P FORWARD DROP');
    expect(fwd).toContain('-A FORWARD -j DOCKER-USER');
    expect(await h().execOk(['cat', '/proc/sys/net/bridge/bridge-nf-call-iptables'])).toBe('1');
    expect(await h().execOk(['ip', 'route', 'show', 'default'])).toBe('');
    // the host's own sysfs: eth0 is its underlay veth
    expect(await h().execOk(['cat', '/sys/class/net/eth0/mtu'])).toBe('1500');
  });

  test('SandboxKey lies under the exec-root and exists only inside the host', async () => {
    await ensureTestImage(h());
    const id = await h().dockerOk(['run', '-d', TEST_IMAGE, 'sleep', '300']);
    try {
      const key = await h().dockerOk(['inspect', '-f', '{{.NetworkSettings.SandboxKey}}', id]);
      expect(key.startsWith(`${h().execRoot}/netns/`)).toBe(true);
      const inside = await h().exec(['sh', '-c', `grep -q " ${key} " /proc/self/mountinfo`]);
      expect(inside.code).toBe(0);
      const outside = fs.readFileSync('/proc/self/mountinfo', 'utf8');
      expect(outside).not.toContain(` ${key} `);
    } finally {
      await h().docker(['rm', '-f', id]);
    }
  });

  test("a plugin socket in the host's /run/docker/plugins is private to the host", async () => {
    const sock = `/run/docker/plugins/vxt-smoke-${v.docker}.sock`;
    const code = `require('net').createServer().listen(${JSON.stringify(sock)}, () => console.log('listening'))`;
    const p: HostProcess = startInHost(h(), process.execPath, ['-e', code]);
    try {
      let seen = false;
      for (let i = 0; i < 100 && !seen; i++) {
        seen = (await h().exec(['test', '-S', sock])).code === 0;
        if (!seen) await new Promise((r) => setTimeout(r, 100));
      }
      expect(seen).toBe(true);
      expect(fs.existsSync(sock)).toBe(false);
      expect(fs.readFileSync(p.logFile!, 'utf8')).toContain('listening');
    } finally {
      await stopInHost(p);
    }
  });

  test("the host's dockerd activates a plugin started with startInHost", async () => {
    const name = `vxtprobe${v.docker}`;
    const sock = `/run/docker/plugins/${name}.sock`;
    // Minimal remote network driver: logs every call, answers {} (enough for create/rm).
    const code = `
      const http = require('http');
      http.createServer((req, res) => {
        let b = ''; req.on('data', (c) => b += c); req.on('end', () => {
          console.log('CALL ' + req.url);
          const r = req.url === '/Plugin.Activate' ? { Implements: ['NetworkDriver'] }
            : req.url === '/NetworkDriver.GetCapabilities' ? { Scope: 'local' } : {};
          res.writeHead(200, { 'Content-Type': 'application/vnd.docker.plugins.v1.1+json' });
          res.end(JSON.stringify(r));
        });
      }).listen(${JSON.stringify(sock)}, () => console.log('listening'));`;
    const p = startInHost(h(), process.execPath, ['-e', code]);
    try {
      for (let i = 0; i < 100 && !fs.readFileSync(p.logFile!, 'utf8').includes('listening'); i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      await h().dockerOk(['network', 'create', '-d', name, '--subnet', '10.199.0.0/24', `${name}-net`]);
      await h().dockerOk(['network', 'rm', `${name}-net`]);
      const log = fs.readFileSync(p.logFile!, 'utf8');
      expect(log).toContain('CALL /Plugin.Activate');
      expect(log).toContain('CALL /NetworkDriver.CreateNetwork');
      expect(log).toContain('CALL /NetworkDriver.DeleteNetwork');
    } finally {
      await stopInHost(p);
    }
  });
});

test('hosts reach each other over the underlay only', async () => {
  const r = await hosts['20'].exec(['busybox', 'ping', '-c', '2', '-W', '2', hosts['26'].ip]);
  expect(r.code).toBe(0);
  // the underlay addresses do not exist in the machine's own namespace
  const routes = fs.readFileSync('/proc/net/route', 'utf8');
  expect(routes).not.toMatch(/\bFEFF1FAC\b/i); // 172.31.254.0 little-endian
});
