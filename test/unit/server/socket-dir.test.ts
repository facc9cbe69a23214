import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Fastify from 'fastify';
import { directoryProblem, ensureSocketDir } from '../../../src/server/socket-dir';
import { listenOnSocket } from '../../../src/server/listen';

describe('src/server/socket-dir.ts', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vxnet-sockdir-'));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('creates a missing directory, mode 0755', () => {
    const sock = path.join(dir, 'run', 'plugins', 'vxnet.sock');
    ensureSocketDir(sock);
    expect(fs.statSync(path.dirname(sock)).mode & 0o777).toBe(0o755);
  });

  it('refuses a directory that is a file, naming the setting', () => {
    const file = path.join(dir, 'plugins');
    fs.writeFileSync(file, '');
    expect(() => ensureSocketDir(path.join(file, 'vxnet.sock'))).toThrow(`cannot use socket directory ${file} (--socket/VXNET_SOCKET): it is not a directory`);
  });

  it('refuses a directory under a file, naming that file', () => {
    const file = path.join(dir, 'file');
    fs.writeFileSync(file, '');
    expect(directoryProblem(path.join(file, 'a', 'b'))).toBe(`${file} is not a directory`);
    expect(() => ensureSocketDir(path.join(file, 'a', 'vxnet.sock'))).toThrow(`${file} is not a directory`);
  });

  it('finds nothing wrong with an existing or creatable directory', () => {
    expect(directoryProblem(dir)).toBeNull();
    expect(directoryProblem(path.join(dir, 'x', 'y'))).toBeNull();
  });

  it('never replaces a file at the socket path that is not a socket', async () => {
    const sock = path.join(dir, 'vxnet.sock');
    fs.writeFileSync(sock, 'keep me');
    const app = Fastify();
    await expect(listenOnSocket(app, sock)).rejects.toThrow(`cannot listen on ${sock} (--socket/VXNET_SOCKET): it exists and is not a socket`);
    expect(fs.readFileSync(sock, 'utf8')).toBe('keep me');
    await app.close();
  });
});
