// The checks that look only at local files and sockets, against real ones in a temp directory.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Fastify, { FastifyInstance } from 'fastify';
import { loadConfig } from '../../../src/config';
import { doctorContext, DoctorContext } from '../../../src/doctor/context';
import { lockHolder, storeCheck } from '../../../src/doctor/store';
import { socketCheck, socketDirCheck } from '../../../src/doctor/socket';
import { EmbeddedStore } from '../../../src/store/embedded';
import { listenOnSocket } from '../../../src/server/listen';
import { leaveStaleSocket } from '../../helpers/stale-socket';

describe('src/doctor/store.ts and src/doctor/socket.ts on real files', () => {
  let dir: string;
  let ctx: DoctorContext;
  const contextFor = (env: Record<string, string>): DoctorContext => (ctx = doctorContext(loadConfig([], env)));
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vxnet-doctor-'));
  });
  afterEach(async () => {
    await ctx?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('finds the pid of the driver holding the embedded store (same lock file as the store)', async () => {
    const store = EmbeddedStore.open({ dataDir: dir });
    expect(lockHolder(dir)).toBe(process.pid);
    const v = await storeCheck.run(contextFor({ VXNET_DATA_DIR: dir }));
    expect(v).toEqual({ status: 'PASS', detail: `embedded store in ${dir} is writable; in use by the running driver (pid ${process.pid})` });
    await store.close();
    expect(lockHolder(dir)).toBeNull();
    expect((await storeCheck.run(ctx)).detail).toContain('no driver holds it now');
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('.vxnet-doctor'))).toEqual([]);
  });

  it('fails a data directory that is a file, and one under a file', async () => {
    const file = path.join(dir, 'file');
    fs.writeFileSync(file, '');
    expect(await storeCheck.run(contextFor({ VXNET_DATA_DIR: file }))).toMatchObject({ status: 'FAIL', detail: `${file}: it is not a directory` });
    expect(await storeCheck.run(contextFor({ VXNET_DATA_DIR: `${file}/data` }))).toMatchObject({ status: 'FAIL', detail: `${file}/data cannot be created: ${file} is not a directory` });
  });

  it('passes a data directory that does not exist yet', async () => {
    expect((await storeCheck.run(contextFor({ VXNET_DATA_DIR: path.join(dir, 'new') }))).status).toBe('PASS');
    expect(fs.existsSync(path.join(dir, 'new'))).toBe(false);
  });

  describe('the socket', () => {
    let app: FastifyInstance | null = null;
    afterEach(async () => {
      await app?.close();
      app = null;
    });

    const serve = async (sock: string): Promise<void> => {
      app = Fastify();
      app.post('/NetworkDriver.GetCapabilities', async () => ({ Scope: 'local' }));
      app.post('/IpamDriver.GetCapabilities', async () => ({ RequiresMACAddress: false }));
      app.post('/Plugin.Activate', async () => {
        throw new Error('the doctor must not activate the plugin: that starts a reconcile');
      });
      await listenOnSocket(app, sock);
    };

    it('warns without a socket, passes one the driver answers on', async () => {
      const sock = path.join(dir, 'plugins', 'vxnet.sock');
      contextFor({ VXNET_SOCKET: sock });
      expect(await socketDirCheck.run(ctx)).toMatchObject({ status: 'PASS', detail: expect.stringContaining('does not exist yet') });
      expect(await socketCheck.run(ctx)).toMatchObject({ status: 'WARN', detail: `no socket at ${sock}: the driver is not running` });
      await serve(sock);
      contextFor({ VXNET_SOCKET: sock });
      expect(await socketDirCheck.run(ctx)).toMatchObject({ status: 'PASS', detail: `${path.dirname(sock)}: directory owned by root, mode 0755` });
      expect(await socketCheck.run(ctx)).toEqual({
        status: 'PASS',
        detail: `the driver answers on ${sock} (NetworkDriver, IpamDriver), owner root, mode 0600`,
      });
    });

    it('fails a directory others can write', async () => {
      fs.chmodSync(dir, 0o777);
      contextFor({ VXNET_SOCKET: path.join(dir, 'vxnet.sock') });
      expect(await socketDirCheck.run(ctx)).toMatchObject({ status: 'FAIL', fix: `chmod go-w ${dir}` });
    });

    it('fails a socket left by a driver that was killed', async () => {
      const sock = path.join(dir, 'vxnet.sock');
      await leaveStaleSocket(sock);
      expect(await socketCheck.run(contextFor({ VXNET_SOCKET: sock }))).toMatchObject({
        status: 'FAIL',
        detail: expect.stringMatching(/exists but nothing answers on it \(.*ECONNREFUSED/),
      });
    });

    it('fails a socket path that is a regular file', async () => {
      const sock = path.join(dir, 'vxnet.sock');
      fs.writeFileSync(sock, '');
      expect(await socketCheck.run(contextFor({ VXNET_SOCKET: sock }))).toMatchObject({ status: 'FAIL', detail: `${sock} exists and is not a socket` });
    });
  });
});
