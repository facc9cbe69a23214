import { WatchFanout } from '../../../src/store/watch-fanout';
import type { WatchEvent, WatchHandlers } from '../../../src/store/types';

/** An inner watch the test drives by hand: what the fan-out opened, and whether it is closed. */
interface Inner {
  prefix: string;
  from: number;
  handlers: WatchHandlers;
  closed: boolean;
}

function setup(): { fanout: WatchFanout; inners: Inner[]; reported: unknown[] } {
  const inners: Inner[] = [];
  const reported: unknown[] = [];
  const fanout = new WatchFanout(
    (prefix, from, handlers) => {
      const inner: Inner = { prefix, from, handlers, closed: false };
      inners.push(inner);
      return { close: () => (inner.closed = true) };
    },
    (_prefix, err) => reported.push(err),
  );
  return { fanout, inners, reported };
}

const put = (key: string, rev: number): WatchEvent => ({ type: 'put', kv: { key, value: 'v', modRevision: rev } });
const del = (key: string, rev: number): WatchEvent => ({ type: 'delete', key, modRevision: rev });

function recorder(): { handlers: WatchHandlers; revs: number[]; resyncs: number } {
  const r = {
    revs: [] as number[],
    resyncs: 0,
    handlers: {
      onEvents: (events: WatchEvent[]) => {
        for (const e of events) r.revs.push(e.type === 'put' ? e.kv.modRevision : e.modRevision);
      },
      onResync: () => {
        r.resyncs++;
      },
    } as WatchHandlers,
  };
  return r;
}

describe('src/store/watch-fanout', () => {
  it('shares one watch of a prefix; a later watcher skips what its own list already had', () => {
    const { fanout, inners } = setup();
    const a = recorder();
    const b = recorder();
    fanout.watch('/e/', 10, a.handlers);
    fanout.watch('/e/', 12, b.handlers); // listed at 12, nothing delivered past 10 yet: joins
    expect(inners).toHaveLength(1);
    expect(inners[0].from).toBe(10);
    inners[0].handlers.onEvents([put('/e/1', 11), del('/e/2', 12), put('/e/3', 13)], 13);
    inners[0].handlers.onEvents([put('/e/4', 14)], 14);
    expect(a.revs).toEqual([11, 12, 13, 14]);
    expect(b.revs).toEqual([13, 14]);
  });

  it('gives a watcher its own watch when the shared one already delivered events it needs', () => {
    const { fanout, inners } = setup();
    const a = recorder();
    const b = recorder();
    const c = recorder();
    fanout.watch('/e/', 10, a.handlers);
    inners[0].handlers.onEvents([put('/e/1', 15)], 15);
    fanout.watch('/e/', 12, b.handlers); // 13..15 went by before it came: a watch of its own from 12
    expect(inners).toHaveLength(2);
    expect(inners[1].from).toBe(12);
    fanout.watch('/e/', 15, c.handlers); // joins the first (delivered up to 15)
    expect(inners).toHaveLength(2);
    inners[0].handlers.onEvents([put('/e/2', 16)], 16);
    inners[1].handlers.onEvents([put('/e/1', 15), put('/e/2', 16)], 16);
    expect(a.revs).toEqual([15, 16]);
    expect(b.revs).toEqual([15, 16]);
    expect(c.revs).toEqual([16]);
    // Another prefix is another watch.
    fanout.watch('/n/', 10, recorder().handlers);
    expect(inners.map((i) => i.prefix)).toEqual(['/e/', '/e/', '/n/']);
  });

  it('closes the shared watch with its last watcher only', () => {
    const { fanout, inners } = setup();
    const w1 = fanout.watch('/e/', 5, recorder().handlers);
    const w2 = fanout.watch('/e/', 5, recorder().handlers);
    w1.close();
    expect(inners[0].closed).toBe(false);
    w2.close();
    expect(inners[0].closed).toBe(true);
    expect(fanout.count()).toBe(0);
    fanout.watch('/e/', 5, recorder().handlers);
    expect(inners).toHaveLength(2);
  });

  it('on a resync tells every member, delivers whatever comes next to all, and takes no newcomer', () => {
    const { fanout, inners } = setup();
    const a = recorder();
    const b = recorder();
    fanout.watch('/e/', 10, a.handlers);
    fanout.watch('/e/', 50, b.handlers);
    inners[0].handlers.onResync?.();
    expect([a.resyncs, b.resyncs]).toEqual([1, 1]);
    // etcd lost its data: its revisions start again below b's old floor; a watch of b's own
    // would deliver them after the resync, so the shared one does too.
    inners[0].handlers.onEvents([put('/e/1', 3)], 3);
    expect(a.revs).toEqual([3]);
    expect(b.revs).toEqual([3]);
    fanout.watch('/e/', 100, recorder().handlers);
    expect(inners).toHaveLength(2);
  });

  it('a member whose handler throws is reported; the others still get the events', () => {
    const { fanout, inners, reported } = setup();
    const b = recorder();
    fanout.watch('/e/', 1, {
      onEvents: () => {
        throw new Error('boom');
      },
    });
    fanout.watch('/e/', 1, b.handlers);
    inners[0].handlers.onEvents([put('/e/1', 2)], 2);
    expect(b.revs).toEqual([2]);
    expect(reported).toHaveLength(1);
  });
});
