// dockerd: the driver asks it which networks and containers still exist (reconcile), and it is
// the one calling the plugin. Reached the way the driver reaches it (VXNET_DOCKER_HOST).
import { causeText } from '../errors';
import { dockerSocketPath, dockerVersion } from '../docker/docker-view';
import { Check, fail, pass } from './check';
import type { DoctorContext } from './context';

const DOCKERD_ANSWER_MS = 3000;

export const dockerdCheck: Check<DoctorContext> = {
  name: 'dockerd',
  timeoutFix: 'dockerd accepts connections but does not answer: look at its log',
  async run(ctx) {
    const socket = dockerSocketPath(ctx.config.dockerHost);
    try {
      const v = await dockerVersion(ctx.config.dockerHost, DOCKERD_ANSWER_MS);
      return pass(`dockerd ${v.version} (API ${v.apiVersion}) answers at ${socket}`);
    } catch (err) {
      return fail(`no answer from dockerd at ${socket}: ${causeText(err)}`, 'start dockerd, or set VXNET_DOCKER_HOST to its socket');
    }
  },
};
