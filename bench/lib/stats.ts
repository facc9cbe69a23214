// Small statistics helpers for the benchmarks. Percentiles interpolate linearly between the two
// closest ranks (the common "R-7" definition: p50 of [1,2,3,4] is 2.5), so p99 of a small sample
// lies near its maximum rather than on it.

export interface Summary {
  n: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  if (sorted.length === 1) return sorted[0];
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

export function summarize(values: number[]): Summary {
  const s = [...values].sort((a, b) => a - b);
  const mean = s.length === 0 ? NaN : s.reduce((a, b) => a + b, 0) / s.length;
  return {
    n: s.length,
    min: s[0] ?? NaN,
    p50: percentile(s, 50),
    p90: percentile(s, 90),
    p99: percentile(s, 99),
    max: s[s.length - 1] ?? NaN,
    mean,
  };
}

/** Rounds every number in a summary (for JSON output and tables). */
export function rounded(s: Summary, digits = 2): Summary {
  const f = 10 ** digits;
  const r = (x: number): number => (Number.isFinite(x) ? Math.round(x * f) / f : x);
  return { n: s.n, min: r(s.min), p50: r(s.p50), p90: r(s.p90), p99: r(s.p99), max: r(s.max), mean: r(s.mean) };
}

export function ratio(a: number, b: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round((a / b) * f) / f;
}

/** Plain-text table with right-aligned numeric columns. */
export function textTable(header: string[], rows: Array<Array<string | number>>): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(cells[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

export function markdownTable(header: string[], rows: Array<Array<string | number>>): string {
  const align = header.map((_, i) => (i === 0 ? ':---' : '---:'));
  return [header, align, ...rows.map((r) => r.map(String))].map((r) => `| ${r.join(' | ')} |`).join('\n');
}

export function fmt(x: number, digits = 1): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '-';
}

/** Two interleaved series measured in the same rounds (a[i] and b[i] in round i). */
export interface Paired {
  a: Summary;
  b: Summary;
  /** median of a ÷ median of b */
  ratioOfMedians: number;
  /** median over rounds of a[i] ÷ b[i] */
  medianPairedRatio: number;
}

export function paired(a: number[], b: number[], digits = 1): Paired {
  const as = summarize(a);
  const bs = summarize(b);
  const perRound = a.map((v, i) => v / b[i]).sort((x, y) => x - y);
  return {
    a: rounded(as, digits),
    b: rounded(bs, digits),
    ratioOfMedians: ratio(as.p50, bs.p50),
    medianPairedRatio: ratio(percentile(perRound, 50), 1),
  };
}
