// Counters of vxnet's name service, registered on the daemon's metrics registry.
import { Counter, Histogram, Registry } from 'prom-client';
import { LATENCY_BUCKETS } from '../metrics/metrics';

export type Transport = 'udp' | 'tcp';
export type Outcome = 'answer' | 'forward' | 'failure' | 'ignored';

export interface NameMetrics {
  observe(transport: Transport, outcome: Outcome, seconds: number): void;
}

export function nameMetrics(registry: Registry): NameMetrics {
  const registers = [registry];
  const queries = new Counter({ name: 'vxnet_dns_queries_total', help: 'DNS queries from containers reaching vxnet, by transport', labelNames: ['transport'], registers });
  const answers = new Counter({ name: 'vxnet_dns_answers_total', help: 'Queries answered from vxnet names', labelNames: ['transport'], registers });
  const forwards = new Counter({ name: 'vxnet_dns_forwards_total', help: 'Queries handed on to the upstream resolver and answered by it', labelNames: ['transport'], registers });
  const failures = new Counter({ name: 'vxnet_dns_failures_total', help: 'Queries that got no answer (upstream failed or timed out)', labelNames: ['transport'], registers });
  const ignored = new Counter({ name: 'vxnet_dns_ignored_total', help: 'Queries dropped: the source is no local container of a vxnet network', labelNames: ['transport'], registers });
  const seconds = new Histogram({ name: 'vxnet_dns_query_duration_seconds', help: 'Time from query to reply, by outcome', labelNames: ['outcome'], buckets: LATENCY_BUCKETS, registers });
  const by: Record<Outcome, Counter<'transport'>> = { answer: answers, forward: forwards, failure: failures, ignored };
  return {
    observe(transport, outcome, s) {
      queries.inc({ transport });
      by[outcome].inc({ transport });
      if (outcome !== 'ignored') seconds.observe({ outcome }, s);
    },
  };
}
