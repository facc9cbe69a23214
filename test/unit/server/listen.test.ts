import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import Fastify from 'fastify';
import { groupId, listenOnSocket } from '../../../src/server/listen';
import { leaveStaleSocket } from '../../helpers/stale-socket';

describe('src/server/listen.ts', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vxnet-sock-'));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('creates the socket root-only, in a directory it creates', async () => {
    const sock = path.join(dir, 'plugins', 'vxnet.sock');
    const app = Fastify();
    await listenOnSocket(app, sock);
    expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
    await app.close();
  });

  it('opens the socket to a configured group (0660), and only to it', async () => {
    const sock = path.join(dir, 'vxnet.sock');
    const app = Fastify();
    await listenOnSocket(app, sock, '4242');
    const st = fs.statSync(sock);
    expect([st.mode & 0o777, st.uid, st.gid]).toEqual([0o660, 0, 4242]);
    await app.close();
  });

  it('refuses an unknown group before it listens', async () => {
    const sock = path.join(dir, 'vxnet.sock');
    const app = Fastify();
    await expect(listenOnSocket(app, sock, 'no-such-group-vx')).rejects.toThrow(/--socket-group\/VXNET_SOCKET_GROUP: no group "no-such-group-vx" in \/etc\/group/);
    expect(fs.existsSync(sock)).toBe(false);
    await app.close();
  });

  it('resolves group names from the group file', () => {
    const file = path.join(dir, 'group');
    fs.writeFileSync(file, 'root:x:0:\ndocker:x:998:alice\nvxmon:x:1234:\n');
    expect(groupId('vxmon', file)).toBe(1234);
    expect(groupId('docker', file)).toBe(998);
    expect(groupId('77', file)).toBe(77);
    expect(() => groupId('nope', file)).toThrow(/no group "nope"/);
  });

  it('replaces a socket file nobody serves (left by a crash)', async () => {
    const sock = path.join(dir, 'vxnet.sock');
    await leaveStaleSocket(sock);
    expect(fs.existsSync(sock)).toBe(true);
    const app = Fastify();
    await listenOnSocket(app, sock);
    const res = await new Promise<boolean>((resolve) => {
      const c = net.connect(sock);
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    expect(res).toBe(true);
    await app.close();
  });

  it('refuses a socket another process still serves', async () => {
    const sock = path.join(dir, 'vxnet.sock');
    const first = Fastify();
    await listenOnSocket(first, sock);
    const second = Fastify();
    await expect(listenOnSocket(second, sock)).rejects.toThrow(`another process is already serving ${sock}`);
    await first.close();
    await second.close();
  });
});
