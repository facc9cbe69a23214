// GET /metrics on its own TCP address (VXNET_METRICS_ADDR). Not on the plugin socket: that one is
// root-only and speaks dockerd's protocol, and Prometheus pulls over TCP.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { vxError, causeText } from '../errors';
import type { ListenAddr } from '../config';
import type { Logger } from '../log';

export const METRICS_PATH = '/metrics';

export interface MetricsSource {
  text(): Promise<string>;
  registry: { contentType: string };
}

export interface MetricsServer {
  /** Where it listens (the real port when 0 was asked, as tests do). */
  addr: ListenAddr;
  close(): Promise<void>;
}

export async function serveMetrics(metrics: MetricsSource, addr: ListenAddr, log: Logger): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://metrics').pathname;
    if (req.method !== 'GET' || path !== METRICS_PATH) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: vxnet serves GET /metrics\n');
      return;
    }
    metrics.text().then(
      (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
      (err: unknown) => {
        log.warn({ err }, 'metrics scrape failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${causeText(err)}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(vxError('VXNET_ERR_BAD_CONFIG', `cannot serve metrics on ${formatAddr(addr)}: ${causeText(err)}`, err)));
    server.listen({ host: addr.host, port: addr.port }, resolve);
  });
  const bound = { host: addr.host, port: (server.address() as AddressInfo).port };
  log.info({ addr: formatAddr(bound), path: METRICS_PATH }, 'metrics listening');
  return {
    addr: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Prometheus keeps its connection open between scrapes; close() alone would wait for it.
        server.closeAllConnections();
      }),
  };
}

export function formatAddr(a: ListenAddr): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
