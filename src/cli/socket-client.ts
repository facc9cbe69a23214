// POSTs to a plugin socket the way dockerd does: no Content-Type, JSON body plus newline.
import * as http from 'node:http';

export interface PluginReply {
  status: number;
  body: Record<string, unknown>;
}

export function pluginCall(socketPath: string, method: string, body?: unknown, timeoutMs = 30_000): Promise<PluginReply> {
  const payload = body === undefined ? '' : `${JSON.stringify(body)}\n`;
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath, method: 'POST', path: `/${method}`, timeout: timeoutMs, headers: { Accept: 'application/vnd.docker.plugins.v1.2+json', 'Content-Length': Buffer.byteLength(payload) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let parsed: Record<string, unknown>;
          try {
            parsed = JSON.parse(text) as Record<string, unknown>;
          } catch {
            parsed = { raw: text };
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from ${socketPath} within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}
