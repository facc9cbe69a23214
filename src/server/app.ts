// The plugin's HTTP surface (PROTOCOL.md §1). Traps handled here, once:
// - dockerd sends JSON with no Content-Type: one catch-all parser reads every body as JSON.
// - success is exactly HTTP 200 with a JSON body ({} when there is nothing to say).
// - failure is HTTP 500 with {"Err": msg, "Error": msg}: network calls read Err, IPAM calls Error.
import Fastify, { FastifyError, FastifyInstance } from 'fastify';
import { VxnetError, causeText } from '../errors';
import type { Logger } from '../log';
import type { NetworkDriver } from '../network/network-driver';
import type { Ipam } from '../ipam/ipam';
import type { PortPublisher } from '../ports';
import { processMemory } from './process-memory';
import { registerNetworkRoutes } from './network-routes';
import { registerIpamRoutes } from './ipam-routes';

/** Docker's bodies are a few KB; anything much larger is not from dockerd. */
export const BODY_LIMIT = 256 * 1024;
export const PLUGIN_CONTENT_TYPE = 'application/vnd.docker.plugins.v1.2+json';

export interface AppDeps {
  driver: NetworkDriver;
  ipam: Ipam;
  log: Logger;
  /** Published ports; without it ProgramExternalConnectivity only checks the endpoint exists. */
  ports?: PortPublisher;
  scope: 'local' | 'global';
  /** `vxnet reconcile`: runs a reconcile pass (or only plans it) and returns what it found. */
  reconcile?: (dryRun: boolean) => Promise<unknown>;
  /**
   * A classic plugin is activated once per dockerd lifetime: an Activate means a dockerd (re)started,
   * and whatever it did to its containers while it was away has to be compared again.
   */
  onActivate?: () => void;
  /** `vxnet policy explain A B PORT[/PROTO]`. */
  explainPolicy?: (from: string, to: string, port: number, proto: 'tcp' | 'udp', family?: 4 | 6) => unknown;
  /** `vxnet status`: what this host and the store say. */
  status?: () => Promise<unknown>;
  /**
   * Told once per answered call, where its log line is written. `method` is the route
   * (NetworkDriver.Join), or "unknown" for a path vxnet does not serve; `errorCode` is a
   * VXNET_ERR_* code, "unexpected" for a bug, or null on success.
   */
  observeCall?: (method: string, seconds: number, errorCode: string | null) => void;
}

/** What the error handler leaves on the request for the onResponse hook. */
interface CallFailure {
  msg: string;
  code: string;
}

/** The method label of a path vxnet does not serve: paths are unbounded, routes are not. */
const UNKNOWN_METHOD = 'unknown';

export function buildApp(deps: AppDeps): FastifyInstance {
  const app = Fastify({
    logger: false,
    bodyLimit: BODY_LIMIT,
    // Types are checked, never coerced: "12" is not a number, extra fields are kept.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
  });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, text, done) => {
    const s = String(text).trim();
    if (s === '') return done(null, {});
    try {
      done(null, JSON.parse(s));
    } catch (err) {
      done(new VxnetError('VXNET_ERR_BAD_REQUEST', `request body is not valid JSON: ${causeText(err)}`), undefined);
    }
  });
  // Calls with nothing to parse (Activate, GetCapabilities) arrive with no body at all.
  // The hooks run on every call: callback hooks, not async ones, so a call does not pay a promise
  // and its microtasks per hook (issue 13: a driver is CPU-bound under a RequestAddress burst).
  app.addHook('preValidation', (req, _reply, done) => {
    if (req.body === undefined || req.body === null) req.body = {};
    done();
  });
  app.addHook('onSend', (_req, reply, payload, done) => {
    reply.header('content-type', PLUGIN_CONTENT_TYPE);
    done(null, payload);
  });
  app.addHook('onResponse', (req, reply, done) => {
    const failure = (req as { vxnetError?: CallFailure }).vxnetError;
    const line = { call: req.url.slice(1), ms: Math.round(reply.elapsedTime * 100) / 100, status: reply.statusCode };
    if (failure) deps.log.warn({ ...line, err: failure.msg, code: failure.code }, 'plugin call failed');
    else deps.log.info(line, 'plugin call');
    deps.observeCall?.(req.routeOptions.url?.slice(1) ?? UNKNOWN_METHOD, reply.elapsedTime / 1000, failure?.code ?? null);
    done();
  });
  app.setErrorHandler((err: FastifyError | VxnetError, req, reply) => {
    const msg = errorMessage(err, req.url.slice(1));
    const code = errorCode(err);
    (req as { vxnetError?: CallFailure }).vxnetError = { msg, code };
    if (code === UNEXPECTED) deps.log.error({ err, call: req.url.slice(1) }, 'unexpected error');
    void reply.code(500).send({ Err: msg, Error: msg });
  });
  app.setNotFoundHandler((req, reply) => {
    const msg = `vxnet does not implement ${req.method} ${req.url}`;
    (req as { vxnetError?: CallFailure }).vxnetError = { msg, code: 'VXNET_ERR_BAD_REQUEST' };
    void reply.code(404).send({ Err: msg, Error: msg });
  });

  app.post('/Plugin.Activate', async () => {
    deps.onActivate?.();
    return { Implements: ['NetworkDriver', 'IpamDriver'] };
  });
  // Not part of Docker's protocol: the operator's `vxnet reconcile` (the socket is root-only).
  app.post('/Vxnet.Reconcile', { schema: { body: { type: 'object', properties: { DryRun: { type: 'boolean' } } } } }, async (req) => {
    if (!deps.reconcile) throw new VxnetError('VXNET_ERR_BAD_REQUEST', 'reconcile is not available');
    return { Plan: await deps.reconcile((req.body as { DryRun?: boolean }).DryRun === true) };
  });
  app.post('/Vxnet.Status', async () => {
    if (!deps.status) throw new VxnetError('VXNET_ERR_BAD_REQUEST', 'status is not available');
    return { Status: await deps.status() };
  });
  const explainBody = {
    type: 'object',
    required: ['From', 'To', 'Port'],
    properties: { From: { type: 'string', minLength: 1 }, To: { type: 'string', minLength: 1 }, Port: { type: 'integer', minimum: 1, maximum: 65535 }, Proto: { enum: ['tcp', 'udp'] }, Family: { enum: [4, 6] } },
  };
  app.post('/Vxnet.PolicyExplain', { schema: { body: explainBody } }, async (req) => {
    if (!deps.explainPolicy) throw new VxnetError('VXNET_ERR_BAD_REQUEST', 'policy explain is not available');
    const b = req.body as { From: string; To: string; Port: number; Proto?: 'tcp' | 'udp'; Family?: 4 | 6 };
    return { Explanation: await deps.explainPolicy(b.From, b.To, b.Port, b.Proto ?? 'tcp', b.Family) };
  });
  // Not Docker's either: the process's memory as V8 and the kernel see it (bench:memory samples
  // it; cheap, reads no store), to tell live objects from heap reserve and native memory.
  app.post('/Vxnet.Memory', async () => ({ Memory: processMemory() }));
  registerNetworkRoutes(app, deps);
  registerIpamRoutes(app, deps);
  return app;
}

/** The code label of an error that is not vxnet's own: a bug in vxnet. */
const UNEXPECTED = 'unexpected';

/** Fastify's own errors (bad body, too large, schema) are the caller's fault: a bad request. */
function errorCode(err: FastifyError | VxnetError): string {
  if (err instanceof VxnetError) return err.code;
  if (err.validation || (err as FastifyError).statusCode) return 'VXNET_ERR_BAD_REQUEST';
  return UNEXPECTED;
}

function errorMessage(err: FastifyError | VxnetError, call: string): string {
  if (err instanceof VxnetError) return err.message;
  if ((err as FastifyError).validation) return `invalid ${call} request: ${err.message}`;
  if ((err as FastifyError).code === 'FST_ERR_CTP_BODY_TOO_LARGE') return `request body is larger than ${BODY_LIMIT} bytes`;
  return `${call} failed: ${causeText(err)}`;
}
