import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EmbeddedStore } from '../../src/store/embedded';

/** An embedded store in a fresh temp dir, removed on close. */
export function tmpEmbeddedStore(): EmbeddedStore {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vxnet-test-'));
  const store = EmbeddedStore.open({ dataDir: dir });
  const close = store.close.bind(store);
  store.close = async () => {
    await close();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return store;
}
