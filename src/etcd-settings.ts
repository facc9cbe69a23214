// How the etcd settings become store options, shared by `vxnet run` and `vxnet doctor` so both
// reach the same cluster the same way, and the one message for an etcd that does not answer.
import type { Config } from './config';
import { VxnetError, causeText, vxError } from './errors';
import type { EtcdStoreOptions } from './store/etcd';

export function etcdOptions(config: Config): EtcdStoreOptions {
  return {
    endpoints: config.etcdEndpoints,
    prefix: config.etcdPrefix,
    ca: config.etcdCa ?? undefined,
    cert: config.etcdCert ?? undefined,
    key: config.etcdKey ?? undefined,
  };
}

/**
 * The store's own message says what failed at which endpoints; the operator also needs the
 * setting to change, and a TLS hint when TLS files are set (a refused handshake looks like an
 * unreachable member).
 */
export function etcdUnreachable(config: Config, err: unknown): VxnetError {
  const tls = config.etcdCa || config.etcdCert || config.etcdKey ? ' and the TLS files (--etcd-ca/--etcd-cert/--etcd-key)' : '';
  const what = err instanceof VxnetError ? err.message : `cannot reach etcd at ${config.etcdEndpoints.join(',') || '(none)'}: ${causeText(err)}`;
  return vxError('VXNET_ERR_STORE', `${what}; check --etcd-endpoints/VXNET_ETCD_ENDPOINTS${tls}`, err);
}
