// Host port reservations: a listening TCP socket or a bound UDP socket per published port, held
// by the driver as dockerd holds them for its own bridge driver. The DNAT rules (portmap.ts) take
// the traffic before it reaches the socket; the socket is there so that the kernel refuses the
// port to any other process (and tells vxnet when another process already has it).
//
// The reservation lives as long as the driver process: after a crash the rules keep serving, and
// reconcile binds the sockets again at the next start.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as dgram from 'node:dgram';
import { vxError } from '../errors';

export type ReserveProto = 'tcp' | 'udp';

export interface Reservation {
  close(): Promise<void>;
}

const EPHEMERAL_RANGE_FILE = '/proc/sys/net/ipv4/ip_local_port_range';

/** The kernel's ephemeral port range, as text (the ports domain parses it). */
export function readEphemeralRange(): string {
  return fs.readFileSync(EPHEMERAL_RANGE_FILE, 'utf8');
}

/**
 * Binds proto/ip:port. Resolves to null when the port is taken (EADDRINUSE); rejects when the
 * address is not one of this host's (EADDRNOTAVAIL) or binding fails otherwise.
 */
export function reservePort(proto: ReserveProto, ip: string, port: number): Promise<Reservation | null> {
  return proto === 'tcp' ? reserveTcp(ip, port) : reserveUdp(ip, port);
}

function reserveTcp(ip: string, port: number): Promise<Reservation | null> {
  return new Promise((resolve, reject) => {
    // Nothing should ever arrive (DNAT comes first); a connection that slips through while the
    // rules are being rebuilt is closed rather than left hanging.
    const server = net.createServer((sock) => sock.destroy());
    server.once('error', (err: NodeJS.ErrnoException) => settle(err, reject, resolve, `${ip}:${port}/tcp`));
    server.listen({ host: ip, port, exclusive: true, backlog: 1 }, () => {
      server.removeAllListeners('error');
      server.on('error', () => undefined);
      server.unref();
      resolve({ close: () => new Promise<void>((done) => server.close(() => done())) });
    });
  });
}

function reserveUdp(ip: string, port: number): Promise<Reservation | null> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket({ type: 'udp4', reuseAddr: false });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      sock.close();
      settle(err, reject, resolve, `${ip}:${port}/udp`);
    });
    sock.bind({ address: ip, port, exclusive: true }, () => {
      sock.removeAllListeners('error');
      sock.on('error', () => undefined);
      // Datagrams that slip past DNAT are dropped unread.
      sock.on('message', () => undefined);
      sock.unref();
      resolve({ close: () => new Promise<void>((done) => sock.close(() => done())) });
    });
  });
}

function settle(err: NodeJS.ErrnoException, reject: (e: Error) => void, resolve: (r: null) => void, what: string): void {
  if (err.code === 'EADDRINUSE') return resolve(null);
  if (err.code === 'EADDRNOTAVAIL') return reject(vxError('VXNET_ERR_BAD_REQUEST', `cannot publish on ${what}: ${what.split(':')[0]} is not an address of this host`, err));
  reject(vxError('VXNET_ERR_KERNEL', `could not reserve host port ${what}: ${err.code ?? err.message}`, err));
}
