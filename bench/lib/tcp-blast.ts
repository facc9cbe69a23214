// A single-stream TCP throughput probe, for machines without iperf3. Run inside a namespace:
//   node tcp-blast.js server IP PORT          accepts connections, one at a time
//   node tcp-blast.js client IP PORT SECONDS  sends 128 KiB writes for SECONDS, then half-closes;
//                                             the server answers with what it received, measured
//                                             from its first byte to the end of the stream, and
//                                             the client prints {"bytes","seconds","bitsPerSecond"}.
import * as net from 'node:net';

const CHUNK = Buffer.alloc(128 * 1024, 0x5a);

function server(ip: string, port: number): void {
  net
    .createServer((sock) => {
      let bytes = 0;
      let first = 0n;
      sock.on('data', (b: Buffer) => {
        if (bytes === 0) first = process.hrtime.bigint();
        bytes += b.length;
      });
      sock.on('end', () => {
        const seconds = Number(process.hrtime.bigint() - first) / 1e9;
        sock.end(`${JSON.stringify({ bytes, seconds, bitsPerSecond: (bytes * 8) / seconds })}\n`);
      });
      sock.on('error', () => undefined);
    })
    .listen(port, ip);
}

function client(ip: string, port: number, seconds: number): void {
  const sock = net.connect(port, ip, () => {
    const until = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
    const pump = (): void => {
      while (process.hrtime.bigint() < until) {
        if (!sock.write(CHUNK)) {
          sock.once('drain', pump);
          return;
        }
      }
      sock.end();
    };
    pump();
  });
  let answer = '';
  sock.on('data', (b: Buffer) => (answer += b.toString()));
  sock.on('end', () => {
    process.stdout.write(answer);
    process.exit(0);
  });
  sock.on('error', (err) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  });
}

const [mode, ip, port, secs] = process.argv.slice(2);
if (mode === 'server') server(ip, Number(port));
else if (mode === 'client') client(ip, Number(port), Number(secs));
else {
  process.stderr.write('usage: tcp-blast.js server IP PORT | client IP PORT SECONDS\n');
  process.exit(2);
}
