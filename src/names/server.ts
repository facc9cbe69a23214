// The listening side: for every upstream resolver the containers' queries went to, one UDP and
// one TCP socket on a port of its own. The kernel redirect (dataplane/dns-intercept.ts) sends
// port-53 traffic for upstream U leaving a vxnet bridge to U's port, so the port tells which
// upstream the container was talking to (a UDP REDIRECT hides the original destination from a
// Node socket).
//
// One more listener, the "front" (names/container-redirect.ts), gets the containers' queries to
// 127.0.0.11 before Docker does; what it does not answer goes back to the asking container's
// address on the same port, where a rule in the container's namespace hands it to Docker's
// resolver (so Docker resolves it exactly as without vxnet).
//
// The sockets listen on every address of the host, but a query is served only when its source
// is a container of this host on a vxnet network (the NameTable knows their addresses), and
// only with that network's names: this is no open resolver for the underlay.
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import type { Logger } from '../log';
import { AnswerCache } from './answer-cache';
import { DNS_PORT, forwardTcp, forwardUdp, frameTcp, SpareSockets, unframeTcp } from './forwarder';
import type { NameMetrics, Outcome, Transport } from './metrics';
import type { NameTable } from './table';

export interface ServerDeps {
  table: NameTable;
  metrics: NameMetrics;
  log: Logger;
  /** Where forwarded queries go (tests point it at a fake resolver's port). */
  upstreamPort?: number;
  /** Sockets made ahead for forwarded UDP queries (shared by the listeners). */
  spares?: SpareSockets;
  /** The front's shortcut: servers a container's outside names may go to directly, or null. */
  direct?: (containerIp: string) => string[] | null;
  /** vxnet's encoded answers, shared by the listeners (one of their own if absent). */
  answers?: AnswerCache;
}

/**
 * dgram resolves the destination of every send with dns.lookup, one tick later even for an
 * address literal; a reply always goes to the literal the query came from.
 */
function literalAddress(address: string, _options: unknown, callback: (err: null, address: string, family: number) => void): void {
  callback(null, address, 4);
}

/** Where a query that vxnet does not answer goes, given the asking container's address. */
export type ForwardTarget = (source: string) => { server: string; port: number };

/** The label of the front listener in status. */
export const FRONT = 'docker (127.0.0.11)';

/** Max TCP queries in flight per connection, so one client cannot pile up work. */
const TCP_MAX_PENDING = 16;
/** An idle TCP client is dropped after this (RFC 7766 suggests seconds, not minutes). */
const TCP_IDLE_MS = 10_000;

export class UpstreamListener {
  private readonly udp: dgram.Socket;
  private readonly tcp: net.Server;
  private readonly conns = new Set<net.Socket>();
  private readonly answers: AnswerCache;

  private constructor(
    readonly upstream: string,
    readonly port: number,
    private readonly deps: ServerDeps,
    private readonly target: ForwardTarget,
    /** The front listener (queries from redirected containers, before Docker saw them). */
    private readonly front = false,
  ) {
    this.udp = dgram.createSocket({ type: 'udp4', lookup: literalAddress as dgram.SocketOptions['lookup'] });
    this.answers = deps.answers ?? new AnswerCache(deps.table);
    this.tcp = net.createServer((c) => this.onTcp(c));
  }

  /** The listener for queries Docker forwards to `upstream` (redirected on the host). */
  static open(upstream: string, port: number, deps: ServerDeps): Promise<UpstreamListener> {
    return UpstreamListener.listen(new UpstreamListener(upstream, port, deps, () => ({ server: upstream, port: deps.upstreamPort ?? DNS_PORT })));
  }

  /** The front listener: unanswered queries go back to the container, to Docker's resolver. */
  static openFront(port: number, deps: ServerDeps): Promise<UpstreamListener> {
    return UpstreamListener.listen(new UpstreamListener(FRONT, port, deps, (source) => ({ server: source, port }), true));
  }

  private static async listen(l: UpstreamListener): Promise<UpstreamListener> {
    const { port, deps } = l;
    await new Promise<void>((resolve, reject) => {
      l.udp.once('error', reject);
      l.udp.bind(port, '0.0.0.0', () => {
        l.udp.off('error', reject);
        resolve();
      });
    });
    l.udp.on('error', (err) => deps.log.warn({ err, port }, 'dns udp socket error'));
    l.udp.on('message', (msg, rinfo) => l.onUdp(msg, rinfo));
    try {
      await new Promise<void>((resolve, reject) => {
        l.tcp.once('error', reject);
        l.tcp.listen(port, '0.0.0.0', () => {
          l.tcp.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      l.udp.close();
      throw err;
    }
    return l;
  }

  /**
   * The reply to one query, or null when none must be sent. An answer of vxnet's is returned
   * at once, on the receiving tick (no promise, no await: the answer path is the one measured
   * against Docker's in-process resolver); only a forwarded query waits.
   */
  private handle(msg: Buffer, source: string, transport: Transport): Buffer | null | Promise<Buffer | null> {
    const started = process.hrtime.bigint();
    const { table, metrics, log } = this.deps;
    const scope = table.scopeOf(source);
    if (!scope) {
      metrics.observe(transport, 'ignored', 0);
      return null;
    }
    try {
      const d = this.answers.decide(msg, scope, transport);
      if (d.kind === 'answer') {
        metrics.observe(transport, 'answer', Number(process.hrtime.bigint() - started) / 1e9);
        return d.reply;
      }
      return this.forward(msg, source, transport, d.direct, started);
    } catch (err) {
      log.debug({ err, upstream: this.upstream, transport }, 'dns answer failed');
      metrics.observe(transport, 'failure', Number(process.hrtime.bigint() - started) / 1e9);
      return null;
    }
  }

  private async forward(msg: Buffer, source: string, transport: Transport, direct: boolean, started: bigint): Promise<Buffer | null> {
    let outcome: Outcome = 'failure';
    try {
      const from = source.replace(/^::ffff:/, '');
      const servers = this.front && direct && transport === 'udp' ? this.deps.direct?.(from) : null;
      const reply = servers
        ? await this.forwardDirect(servers, msg)
        : transport === 'udp'
          ? await forwardUdp(this.target(from).server, msg, this.target(from).port, undefined, this.deps.spares)
          : await forwardTcp(this.target(from).server, msg, this.target(from).port);
      outcome = 'forward';
      return reply;
    } catch (err) {
      // No reply: the client (Docker's resolver) times out and tries its next server, as it
      // would have without vxnet in the path.
      this.deps.log.debug({ err, upstream: this.upstream, transport }, 'dns forward failed');
      return null;
    } finally {
      this.deps.metrics.observe(transport, outcome, Number(process.hrtime.bigint() - started) / 1e9);
    }
  }

  /**
   * A name Docker would only have forwarded, sent to the servers Docker would have used, in
   * its order: the next one only when one fails (Docker's resolver does the same).
   */
  private async forwardDirect(servers: string[], msg: Buffer): Promise<Buffer> {
    let last: unknown = null;
    for (const server of servers) {
      try {
        return await forwardUdp(server, msg, this.deps.upstreamPort ?? DNS_PORT, undefined, this.deps.spares);
      } catch (err) {
        last = err;
      }
    }
    throw last;
  }

  private onUdp(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const reply = this.handle(msg, rinfo.address, 'udp');
    if (reply instanceof Promise) void reply.then((r) => r && this.sendUdp(r, rinfo));
    else if (reply) this.sendUdp(reply, rinfo);
  }

  private sendUdp(reply: Buffer, rinfo: dgram.RemoteInfo): void {
    try {
      this.udp.send(reply, rinfo.port, rinfo.address);
    } catch {
      /* closed meanwhile (driver stopping) */
    }
  }

  private onTcp(conn: net.Socket): void {
    let buf: Buffer = Buffer.alloc(0);
    let pending = 0;
    this.conns.add(conn);
    conn.on('close', () => this.conns.delete(conn));
    conn.setTimeout(TCP_IDLE_MS, () => conn.destroy());
    conn.on('error', () => conn.destroy());
    conn.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      for (let one = unframeTcp(buf); one; one = unframeTcp(buf)) {
        buf = one.rest;
        if (pending >= TCP_MAX_PENDING) return void conn.destroy();
        pending++;
        void Promise.resolve(this.handle(Buffer.from(one.msg), conn.remoteAddress ?? '', 'tcp')).then((reply) => {
          pending--;
          if (reply && !conn.destroyed) conn.write(frameTcp(reply));
          else if (!reply) conn.destroy();
        });
      }
    });
  }

  async close(): Promise<void> {
    this.udp.close();
    const closed = new Promise<void>((resolve) => this.tcp.close(() => resolve()));
    for (const c of this.conns) c.destroy();
    await closed;
  }
}
