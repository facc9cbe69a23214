import type { FastifyInstance } from 'fastify';

export type Poster = <B>(method: string, schema: Record<string, unknown> | null, handler: (body: B) => Promise<unknown>) => void;

/** Registers POST /<iface>.<method> with its body schema (compiled once, at startup). */
export function poster(app: FastifyInstance, iface: 'NetworkDriver' | 'IpamDriver'): Poster {
  return (method, schema, handler) => {
    app.post(`/${iface}.${method}`, schema ? { schema: { body: schema } } : {}, async (req) => handler(req.body as never));
  };
}
