// One catalogue of every error vxnet reports to dockerd or to the operator.
// Each code is documented in docs/errors.md; test/unit/errors.test.ts checks both ways.
// The server's error handler turns any VxnetError into HTTP 500 {"Err": msg, "Error": msg}
// (network calls read Err, IPAM calls read Error: PROTOCOL.md §1).

export type ErrorCode =
  | 'VXNET_ERR_BAD_REQUEST'
  | 'VXNET_ERR_BAD_CONFIG'
  | 'VXNET_ERR_UNKNOWN_POOL'
  | 'VXNET_ERR_POOL_OVERLAP'
  | 'VXNET_ERR_POOLS_EXHAUSTED'
  | 'VXNET_ERR_SUBNET_EXHAUSTED'
  | 'VXNET_ERR_ADDRESS_IN_USE'
  | 'VXNET_ERR_ADDRESS_OUTSIDE_POOL'
  | 'VXNET_ERR_UNKNOWN_NETWORK'
  | 'VXNET_ERR_NETWORK_CONFLICT'
  | 'VXNET_ERR_IPAM_REQUIRED'
  | 'VXNET_ERR_UNKNOWN_ENDPOINT'
  | 'VXNET_ERR_ENDPOINT_CONFLICT'
  | 'VXNET_ERR_VNI_TAKEN'
  | 'VXNET_ERR_VNIS_EXHAUSTED'
  | 'VXNET_ERR_STORE'
  | 'VXNET_ERR_STORE_CONFLICT'
  | 'VXNET_ERR_KERNEL'
  | 'VXNET_ERR_PORT_IN_USE'
  | 'VXNET_ERR_PORTS_EXHAUSTED'
  | 'VXNET_ERR_FIREWALL'
  | 'VXNET_ERR_BAD_POLICY';

export const ERROR_CODES: readonly ErrorCode[] = [
  'VXNET_ERR_BAD_REQUEST',
  'VXNET_ERR_BAD_CONFIG',
  'VXNET_ERR_UNKNOWN_POOL',
  'VXNET_ERR_POOL_OVERLAP',
  'VXNET_ERR_POOLS_EXHAUSTED',
  'VXNET_ERR_SUBNET_EXHAUSTED',
  'VXNET_ERR_ADDRESS_IN_USE',
  'VXNET_ERR_ADDRESS_OUTSIDE_POOL',
  'VXNET_ERR_UNKNOWN_NETWORK',
  'VXNET_ERR_NETWORK_CONFLICT',
  'VXNET_ERR_IPAM_REQUIRED',
  'VXNET_ERR_UNKNOWN_ENDPOINT',
  'VXNET_ERR_ENDPOINT_CONFLICT',
  'VXNET_ERR_VNI_TAKEN',
  'VXNET_ERR_VNIS_EXHAUSTED',
  'VXNET_ERR_STORE',
  'VXNET_ERR_STORE_CONFLICT',
  'VXNET_ERR_KERNEL',
  'VXNET_ERR_PORT_IN_USE',
  'VXNET_ERR_PORTS_EXHAUSTED',
  'VXNET_ERR_FIREWALL',
  'VXNET_ERR_BAD_POLICY',
];

export class VxnetError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VxnetError';
    this.code = code;
  }
}

export function vxError(code: ErrorCode, message: string, cause?: unknown): VxnetError {
  return new VxnetError(code, message, cause === undefined ? undefined : { cause });
}

/** The kernel says the link does not exist; callers removing things treat it as done. */
export class LinkNotFoundError extends VxnetError {
  readonly link: string;
  constructor(link: string, cause?: unknown) {
    super('VXNET_ERR_KERNEL', `link ${link} not found`, cause === undefined ? undefined : { cause });
    this.name = 'LinkNotFoundError';
    this.link = link;
  }
}

/** Short text of any thrown value, for messages that keep their cause. */
export function causeText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
