import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EmbeddedStore } from '../../../src/store/embedded';
import { storeConformance } from '../../helpers/store-conformance';

const dirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'vxnet-store-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const dirOf = new WeakMap<object, string>();
storeConformance(
  'embedded',
  async () => {
    const dir = tmpDir();
    const s = EmbeddedStore.open({ dataDir: dir });
    dirOf.set(s, dir);
    return s;
  },
  async (s) => {
    const dir = dirOf.get(s) as string;
    await s.close();
    const again = EmbeddedStore.open({ dataDir: dir });
    dirOf.set(again, dir);
    return again;
  },
);

describe('src/store/embedded.ts', () => {
  it('drops a torn last line left by a crash and keeps everything before it', async () => {
    const dir = tmpDir();
    const s = EmbeddedStore.open({ dataDir: dir });
    await s.createIfAbsent('/k/1', 'a');
    await s.createIfAbsent('/k/2', 'b');
    await s.close();
    fs.appendFileSync(path.join(dir, 'store.log'), '{"r":3,"op":"put","k":"/k/3","v');
    const again = EmbeddedStore.open({ dataDir: dir });
    expect((await again.list('/k/')).map((kv) => kv.value)).toEqual(['a', 'b']);
    expect(await again.createIfAbsent('/k/3', 'c')).toBe(true);
    await again.close();
    const third = EmbeddedStore.open({ dataDir: dir });
    expect((await third.get('/k/3'))?.value).toBe('c');
    await third.close();
  });

  it('folds the log into a snapshot and reads both back', async () => {
    const dir = tmpDir();
    const s = EmbeddedStore.open({ dataDir: dir, compactEvery: 10 });
    for (let i = 0; i < 25; i++) await s.createIfAbsent(`/c/${String(i).padStart(2, '0')}`, String(i));
    await s.delete('/c/00');
    const rev = await s.revision();
    await s.close();
    expect(fs.existsSync(path.join(dir, 'store.snap'))).toBe(true);
    expect(fs.readFileSync(path.join(dir, 'store.log'), 'utf8').split('\n').filter(Boolean).length).toBeLessThan(10);
    const again = EmbeddedStore.open({ dataDir: dir });
    expect(await again.list('/c/')).toHaveLength(24);
    expect(await again.revision()).toBe(rev);
    await again.close();
  });

  it('refuses a second process-level open of the same directory while the first holds it', async () => {
    const dir = tmpDir();
    // A lock naming a live process other than us (pid 1) is honoured.
    fs.writeFileSync(path.join(dir, 'store.lock'), '1');
    expect(() => EmbeddedStore.open({ dataDir: dir })).toThrow(/in use by process 1/);
  });

  it('takes over a lock left by a dead process', async () => {
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, 'store.lock'), '999999999');
    const s = EmbeddedStore.open({ dataDir: dir });
    expect(await s.createIfAbsent('/x', '1')).toBe(true);
    await s.close();
  });

  it('takes over a lock whose pid now belongs to another process (a new pid namespace)', async () => {
    const dir = tmpDir();
    const stat = fs.readFileSync('/proc/1/stat', 'utf8');
    const started = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    fs.writeFileSync(path.join(dir, 'store.lock'), `1 ${started}`);
    expect(() => EmbeddedStore.open({ dataDir: dir })).toThrow(/in use by process 1/);
    fs.writeFileSync(path.join(dir, 'store.lock'), `1 ${Number(started) + 1}`);
    const s = EmbeddedStore.open({ dataDir: dir });
    expect(fs.readFileSync(path.join(dir, 'store.lock'), 'utf8')).toMatch(new RegExp(`^${process.pid} \\d+$`));
    await s.close();
  });

  it('drops keys written under a lease when the store is reopened (their owner is gone)', async () => {
    const dir = tmpDir();
    const s = EmbeddedStore.open({ dataDir: dir });
    const lease = await s.grantLease(10);
    await s.createIfAbsent('/hosts/a', 'v', { lease });
    await s.createIfAbsent('/plain', 'v');
    await s.close();
    const again = EmbeddedStore.open({ dataDir: dir });
    expect(await again.get('/hosts/a')).toBeNull();
    expect(await again.get('/plain')).not.toBeNull();
    await again.close();
  });
});
