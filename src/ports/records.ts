// ports/<host>/<EndpointID>: one endpoint's published ports on one host. Written before its NAT
// rules are added and deleted after they are removed, so the store always names every rule
// vxnet may have left in the kernel (reconcile removes rules nobody's record names).
import type { PortBinding, PortRequest } from './bindings';

export interface PortRecord {
  networkId: string;
  lnet: string;
  /** Plain IPv4 address of the container on its vxnet network. */
  containerIp: string;
  /** The network's bridge on this host (vxb-<VNI>) and its subnet, for the hairpin rule. */
  bridge: string;
  subnet: string;
  /** The host end of the container's veth: in hairpin mode, so the container reaches itself. */
  veth: string;
  /** What dockerd asked for: a re-sent ProgramExternalConnectivity with the same is a no-op. */
  requests: PortRequest[];
  /** The host ports chosen for them, in the same order. */
  bindings: PortBinding[];
  /** When it was programmed (ms since the epoch). */
  at: number;
}
