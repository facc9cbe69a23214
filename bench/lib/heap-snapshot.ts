// Reads a V8 heap snapshot (.heapsnapshot, written by `node --heapsnapshot-signal`) into what
// the memory bench reports: the live heap (a snapshot is taken after a full GC, so every node in
// it is reachable) and its bytes grouped by constructor, as DevTools' "Summary" view groups them.
import * as fs from 'node:fs';

export interface HeapSummary {
  /** Sum of every node's self size: the live JS heap. */
  totalBytes: number;
  nodes: number;
  /** Bytes and object count per group, largest first. */
  groups: Array<{ name: string; bytes: number; count: number }>;
}

interface SnapshotJson {
  snapshot: { meta: { node_fields: string[]; node_types: unknown[] } };
  nodes: number[];
  strings: string[];
}

/**
 * The group of a node: objects (and native objects) by their constructor name, closures by
 * nothing finer than "(closure)", everything else by its type ("(string)", "(code)" …).
 */
function groupOf(type: string, name: string): string {
  if (type === 'object' || type === 'native') return name;
  return `(${type})`;
}

/** Summarises a parsed snapshot (pure; unit-tested). */
export function summarizeHeap(snap: SnapshotJson): HeapSummary {
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0] as string[];
  const width = fields.length;
  const iType = fields.indexOf('type');
  const iName = fields.indexOf('name');
  const iSize = fields.indexOf('self_size');
  const groups = new Map<string, { bytes: number; count: number }>();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    const size = snap.nodes[i + iSize];
    total += size;
    const g = groupOf(types[snap.nodes[i + iType]], snap.strings[snap.nodes[i + iName]]);
    const e = groups.get(g);
    if (e) {
      e.bytes += size;
      e.count++;
    } else groups.set(g, { bytes: size, count: 1 });
  }
  return {
    totalBytes: total,
    nodes: snap.nodes.length / width,
    groups: [...groups].map(([name, e]) => ({ name, ...e })).sort((a, b) => b.bytes - a.bytes),
  };
}

export function readHeapSnapshot(file: string): HeapSummary {
  return summarizeHeap(JSON.parse(fs.readFileSync(file, 'utf8')) as SnapshotJson);
}

/** Groups that grew most from `before` to `after` (bytes, count), largest growth first. */
export function heapGrowth(before: HeapSummary, after: HeapSummary, top = 15): Array<{ name: string; bytes: number; count: number }> {
  const b = new Map(before.groups.map((g) => [g.name, g]));
  return after.groups
    .map((g) => ({ name: g.name, bytes: g.bytes - (b.get(g.name)?.bytes ?? 0), count: g.count - (b.get(g.name)?.count ?? 0) }))
    .sort((x, y) => y.bytes - x.bytes)
    .slice(0, top);
}
