// The environment every multi-host bench gives the built driver: etcd as the store, the VTEP on
// the simulated host's underlay NIC, and info logs (debug lines would cost the driver CPU that the
// figures are meant to measure).
export function etcdDriverEnv(endpoint: string, prefix: string): Record<string, string> {
  return {
    VXNET_STORE: 'etcd',
    VXNET_ETCD_ENDPOINTS: endpoint,
    VXNET_ETCD_PREFIX: prefix,
    VXNET_VTEP_INTERFACE: 'eth0',
    VXNET_LOG_LEVEL: 'info',
  };
}
