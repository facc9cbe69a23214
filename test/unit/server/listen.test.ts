import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import Fastify from 'fastify';
import { listenOnSocket } from '../../../src/server/listen';
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
