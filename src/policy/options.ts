// Policy rules given as endpoint driver options (`docker run --network name=N,driver-opt=vxnet.allow=…`,
// `docker network connect --driver-opt`, compose `driver_opts`): they arrive verbatim in
// CreateEndpoint's Options (PROTOCOL.md §2), so a bad rule fails the command there.
import { vxError } from '../errors';
import { OPT_ALLOW, OPT_EGRESS, parseRules } from './parse';

/** The validated option values to keep in the endpoint record (absent when not given). */
export function endpointPolicyOptions(options: Record<string, unknown> | null | undefined): { allow?: string; egress?: string } {
  const out: { allow?: string; egress?: string } = {};
  for (const [opt, field] of [[OPT_ALLOW, 'allow'], [OPT_EGRESS, 'egress']] as const) {
    const v = options?.[opt];
    if (v === undefined) continue;
    if (typeof v !== 'string') throw vxError('VXNET_ERR_BAD_POLICY', `${opt} must be a string, got ${JSON.stringify(v)}`);
    out[field] = v.trim();
  }
  parseRules(out); // throws VXNET_ERR_BAD_POLICY naming the option and the entry
  return out;
}
