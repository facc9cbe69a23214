// The driver's socket, spoken to as dockerd does (the client lives in src/cli).
import { pluginCall } from '../../src/cli/socket-client';

export { pluginCall };
export type { PluginReply } from '../../src/cli/socket-client';

export async function pluginOk(socketPath: string, method: string, body?: unknown): Promise<Record<string, unknown>> {
  const r = await pluginCall(socketPath, method, body);
  if (r.status !== 200 || r.body.Err || r.body.Error) throw new Error(`${method} failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}
