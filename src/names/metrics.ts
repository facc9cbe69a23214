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
  // Children bound once per label value: observe() runs for every query, and a labels object
  // would be hashed on each call.
  const bound = <T>(make: (label: string) => T): ((label: string) => T) => {
    const made = new Map<string, T>();
    return (label) => {
      let c = made.get(label);
      if (!c) made.set(label, (c = make(label)));
      return c;
    };
  };
  const byOutcome: Record<Outcome, Counter<'transport'>> = { answer: answers, forward: forwards, failure: failures, ignored };
  const total = bound((transport) => queries.labels(transport));
  const counted = bound((key) => {
    const [outcome, transport] = key.split('/') as [Outcome, string];
    return byOutcome[outcome].labels(transport);
  });
  const timed = bound((outcome) => seconds.labels(outcome));
  return {
    observe(transport, outcome, s) {
      total(transport).inc();
      counted(`${outcome}/${transport}`).inc();
      if (outcome !== 'ignored') timed(outcome).observe(s);
    },
  };
}
