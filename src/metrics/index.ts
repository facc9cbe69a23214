// Prometheus metrics: the registry and its callbacks (metrics.ts), served over HTTP (http.ts).
export { Metrics, boundPools, LATENCY_BUCKETS, MAX_POOL_SERIES, OTHER_POOLS } from './metrics';
export type { MetricSources } from './metrics';
export { serveMetrics, METRICS_PATH, formatAddr } from './http';
export type { MetricsServer } from './http';
