// Hands a query on to an upstream resolver, byte for byte, from the host's namespace, and
// returns the upstream's reply byte for byte: vxnet never re-encodes what it does not answer.
import * as dgram from 'node:dgram';
import * as net from 'node:net';

export const DNS_PORT = 53;
/** Docker's own resolver waits 4 s per external server; vxnet answers it a little sooner. */
export const FORWARD_TIMEOUT_MS = 3500;
const TCP_LENGTH_BYTES = 2;

function familyOf(ip: string): 'udp4' | 'udp6' {
  return net.isIPv6(ip) ? 'udp6' : 'udp4';
}

/** Bound IPv4 sockets kept ready per SpareSockets. */
const SPARE_SOCKETS = 4;

/**
 * UDP sockets created and bound ahead of need. A query still gets a socket (and a random port)
 * of its own, used once and closed, so a reply must match port, server and id, and an off-path
 * spoofer has to guess the port as well as the id (as with a socket per query). What moves off
 * the query's way is creating and binding that socket: about 0.1 ms per forwarded query,
 * measured here, a fifth of vxnet's whole added time for an outside name. A new spare is made
 * after the query went out.
 */
export class SpareSockets {
  private readonly spares: dgram.Socket[] = [];
  private making = 0;
  private closed = false;

  constructor(private readonly keep = SPARE_SOCKETS) {
    this.refill();
  }

  /** A bound socket if one is ready, else a new one (bound by its first send). */
  take(): dgram.Socket {
    const sock = this.spares.pop() ?? dgram.createSocket('udp4');
    setImmediate(() => this.refill());
    return sock;
  }

  close(): void {
    this.closed = true;
    for (const s of this.spares.splice(0)) s.close();
  }

  private refill(): void {
    while (!this.closed && this.spares.length + this.making < this.keep) {
      this.making++;
      const sock = dgram.createSocket('udp4');
      sock.on('error', () => undefined); // a failed bind: the socket is simply not kept
      sock.unref();
      sock.bind(0, () => {
        this.making--;
        if (this.closed) sock.close();
        else this.spares.push(sock);
      });
    }
  }
}

/**
 * One socket per query: the kernel then matches the reply to its query by port. `spares`
 * (IPv4 servers) saves creating the socket while the query waits.
 */
export function forwardUdp(server: string, msg: Buffer, port = DNS_PORT, timeoutMs = FORWARD_TIMEOUT_MS, spares?: SpareSockets): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const family = familyOf(server);
    const sock = spares && family === 'udp4' ? spares.take() : dgram.createSocket(family);
    let finished = false;
    const done = (err: Error | null, reply?: Buffer): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      sock.removeAllListeners('message');
      if (err) reject(err);
      else resolve(reply as Buffer);
      // Closed after the reply is on its way back to the container.
      setImmediate(() => sock.close());
    };
    const timer = setTimeout(() => done(new Error(`no answer from ${server}:${port} within ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err) => done(err));
    sock.on('message', (reply, rinfo) => {
      // Only the upstream's reply to this very query (same server, port and id) counts.
      if (rinfo.address !== server || rinfo.port !== port || reply.length < 2 || reply.readUInt16BE(0) !== msg.readUInt16BE(0)) return;
      done(null, reply);
    });
    sock.send(msg, port, server, (err) => {
      if (err) done(err);
    });
  });
}

/** One connection per query (a container's TCP queries are rare: retries after truncation). */
export function forwardTcp(server: string, msg: Buffer, port = DNS_PORT, timeoutMs = FORWARD_TIMEOUT_MS): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: server, port });
    let buf: Buffer = Buffer.alloc(0);
    const done = (err: Error | null, reply?: Buffer): void => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(reply as Buffer);
    };
    const timer = setTimeout(() => done(new Error(`no answer from ${server}:${port}/tcp within ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err) => done(err));
    sock.on('connect', () => sock.write(frameTcp(msg)));
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const one = unframeTcp(buf);
      if (one) done(null, one.msg);
    });
    sock.on('end', () => done(new Error(`${server}:${port}/tcp closed before a full answer`)));
  });
}

/** A DNS message over TCP is preceded by its length (RFC 1035 4.2.2). */
export function frameTcp(msg: Buffer): Buffer {
  const len = Buffer.alloc(TCP_LENGTH_BYTES);
  len.writeUInt16BE(msg.length);
  return Buffer.concat([len, msg]);
}

/** The first complete message in buf and what follows it, or null while it is incomplete. */
export function unframeTcp(buf: Buffer): { msg: Buffer; rest: Buffer } | null {
  if (buf.length < TCP_LENGTH_BYTES) return null;
  const len = buf.readUInt16BE(0);
  if (buf.length < TCP_LENGTH_BYTES + len) return null;
  return { msg: buf.subarray(TCP_LENGTH_BYTES, TCP_LENGTH_BYTES + len), rest: buf.subarray(TCP_LENGTH_BYTES + len) };
}
