// Calls the plugin on its Unix socket the way dockerd does: HTTP POST /<Interface>.<Method>, a JSON
// body followed by a newline, no Content-Type, the plugin media type in Accept, one keep-alive
// connection. Each call is timed from the request being written to the last byte of the answer.
import * as http from 'node:http';
import { randomBytes } from 'node:crypto';

export interface CallResult {
  status: number;
  body: Record<string, unknown>;
  ms: number;
}

/** A Docker object ID: 64 lowercase hex characters. */
export function dockerId(): string {
  return randomBytes(32).toString('hex');
}

export class PluginClient {
  private readonly agent: http.Agent;
  /** maxSockets: calls in flight at once (dockerd: 1 per container operation). */
  constructor(private readonly socketPath: string, maxSockets = 1) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets });
  }

  /** One call; resolves with the status (any), the parsed answer and the round trip in ms. */
  raw(method: string, body: unknown): Promise<CallResult> {
    const payload = Buffer.from(`${JSON.stringify(body)}\n`);
    return new Promise((resolve, reject) => {
      const t0 = process.hrtime.bigint();
      const req = http.request(
        {
          socketPath: this.socketPath,
          agent: this.agent,
          method: 'POST',
          path: `/${method}`,
          headers: { Accept: 'application/vnd.docker.plugins.v1.2+json', 'Content-Length': payload.length },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const ms = Number(process.hrtime.bigint() - t0) / 1e6;
            const text = Buffer.concat(chunks).toString();
            let parsed: Record<string, unknown> = {};
            try {
              parsed = text.trim() === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
            } catch {
              parsed = { raw: text };
            }
            resolve({ status: res.statusCode ?? 0, body: parsed, ms });
          });
          res.on('error', reject);
        },
      );
      req.setTimeout(60_000, () => req.destroy(new Error(`${method}: no answer within 60 s`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
