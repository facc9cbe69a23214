// The names publisher's resync against a scripted dockerd on a Unix socket (the Docker API calls
// it makes: events, containers/json, containers/ID/json) and an embedded store.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { NamePublisher } from '../../../src/names/publisher';
import { NameTable } from '../../../src/names/table';
import { nameKey } from '../../../src/names/records';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';
import { TEST_KEYS } from '../../helpers/plugin-app';
import { eventually } from '../../helpers/eventually';

const CID = 'c0ffee'.padEnd(64, '1');
const EP = 'e0'.padEnd(64, '2');

describe('src/names/publisher resync', () => {
  let server: http.Server;
  let dir: string;
  /** Answers to GET /containers/json, one per call (the last one repeats). */
  let runningLists: string[][];
  let listCalls = 0;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vxt-pub-'));
    listCalls = 0;
    server = http.createServer((req, res) => {
      const url = req.url ?? '';
      if (url.includes('/events')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.flushHeaders(); // an open, idle event stream
        return;
      }
      if (/\/containers\/json/.test(url)) {
        const ids = runningLists[Math.min(listCalls++, runningLists.length - 1)];
        res.end(JSON.stringify(ids.map((Id) => ({ Id }))));
        return;
      }
      // Inspect: the container is not known (it started after the first list).
      res.writeHead(404).end('{"message":"no such container"}');
    });
    await new Promise<void>((r) => server.listen(path.join(dir, 'docker.sock'), r));
  });

  afterEach(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('keeps the record of a container that started after its first list of running containers', async () => {
    const store = tmpEmbeddedStore();
    // The container's endpoint and the names record its start event wrote while the resync ran.
    const nk = nameKey(TEST_KEYS, 'n1', EP);
    await store.createIfAbsent(TEST_KEYS.endpoint('n1', EP), JSON.stringify({ networkId: 'd1', host: 'h1', vtep: null, mac: '02:00:00:00:00:02', ipv4: '10.5.0.2/24', ipv6: null }));
    await store.createIfAbsent(nk, JSON.stringify({ host: 'h1', containerId: CID, network: 'net', names: ['web'], ipv4: '10.5.0.2', ipv6: null, labels: {} }));
    // A record of this host's container that no longer runs: removed, as before.
    const stopped = nameKey(TEST_KEYS, 'n1', 'e9'.padEnd(64, '3'));
    await store.createIfAbsent(TEST_KEYS.endpoint('n1', 'e9'.padEnd(64, '3')), JSON.stringify({ networkId: 'd1', host: 'h1', vtep: null, mac: '02:00:00:00:00:09', ipv4: '10.5.0.9/24', ipv6: null }));
    await store.createIfAbsent(stopped, JSON.stringify({ host: 'h1', containerId: 'dead'.padEnd(64, '4'), network: 'net', names: ['old'], ipv4: '10.5.0.9', ipv6: null, labels: {} }));
    runningLists = [[], [CID]];
    const publisher = new NamePublisher({
      store,
      keys: TEST_KEYS,
      host: 'h1',
      table: new NameTable('h1'),
      socketPath: path.join(dir, 'docker.sock'),
      log: pino({ level: 'silent' }),
      onContainerDns: () => undefined,
      onContainer: () => undefined,
      onContainerGone: () => undefined,
    });
    try {
      publisher.start();
      await eventually('resync done', async () => listCalls >= 2 && (await store.get(stopped)) === null, 5000);
      expect(await store.get(nk)).not.toBeNull();
    } finally {
      publisher.close();
      await store.close();
    }
  });
});
