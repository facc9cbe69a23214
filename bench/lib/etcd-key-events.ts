// Prints each put and delete under an etcd prefix as one JSON line, stamped on receipt:
//
//   node dist/bench/lib/etcd-key-events.js ENDPOINT PREFIX
//   → {"t":<epoch ms>,"op":"put"|"delete","key":"…"}
//
// Run inside a simulated host, it shows when that host's driver can first see a record (its own
// watch on the same etcd gets the same event at about the same time), which splits a "record
// written elsewhere → kernel changed here" figure into the writer's part and the reader's.
import { Etcd3 } from 'etcd3';

if (require.main === module) {
  const [endpoint, prefix] = process.argv.slice(2);
  if (!endpoint || !prefix) {
    process.stderr.write('usage: etcd-key-events.js ENDPOINT PREFIX\n');
    process.exit(2);
  }
  const client = new Etcd3({ hosts: endpoint });
  const stamp = (): number => performance.timeOrigin + performance.now();
  void (async () => {
    const w = await client.watch().prefix(prefix).create();
    w.on('put', (kv) => process.stdout.write(`${JSON.stringify({ t: stamp(), op: 'put', key: kv.key.toString() })}\n`));
    w.on('delete', (kv) => process.stdout.write(`${JSON.stringify({ t: stamp(), op: 'delete', key: kv.key.toString() })}\n`));
    w.on('error', (err: Error) => process.stdout.write(`${JSON.stringify({ t: stamp(), error: err.message })}\n`));
    process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  })().catch((err: unknown) => {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(1);
  });
  process.on('SIGTERM', () => {
    client.close();
    process.exit(0);
  });
}
