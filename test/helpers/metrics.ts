// One sample of a driver's Prometheus endpoint (VXNET_METRICS_ADDR), scraped from inside its host
// as Prometheus on that host would.
import type { Host } from './hosts';

/** The value of the series `line` (name and labels as exposed), undefined when it is absent. */
export async function scrapeMetric(host: Host, addr: string, line: string): Promise<number | undefined> {
  const scrape = `fetch('http://${addr}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t), (e) => { console.error(e); process.exit(1); })`;
  const text = await host.execOk([process.execPath, '-e', scrape]);
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}
