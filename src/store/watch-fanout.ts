// One store watch per key prefix, shared by every component that watches that prefix.
//
// Why: the driver's components each follow `endpoints/` (peers, the plugin calls' record cache,
// the policy engine, the name table), `networks/` and `names/` from the revision of their own
// initial list. With one etcd watch each, etcd sends every event once per watch and the driver
// decodes it (protobuf, then the value's text) once per watch: with 10,000 endpoints arriving
// from other hosts, four decodes per event, most of a busy driver's garbage. Here a second
// watcher of a prefix joins the first one's watch, and every event is decoded once.
//
// Revisions. A watch delivers events in revision order, starting after the revision it was
// asked for, and `known` records the highest revision up to which the shared watch has
// delivered everything (its start, then each event's and progress notification's revision).
// A watcher that asks for events after revision F can join only while known <= F: events in
// (known, F] are still to come, and it skips those (it listed them already); events after F are
// all still to come too. If the shared watch has already passed F (known > F), some events the
// newcomer needs were delivered before it came: it gets a watch of its own (which later watchers
// of the prefix may join in turn). A resync (compaction, etcd lost its data) resets every
// member's floor, as a watch of its own would, and closes the group to newcomers.
import type { WatchEvent, WatchHandlers, Watcher } from './types';

export type OpenWatch = (prefix: string, fromRevision: number, handlers: WatchHandlers) => Watcher;

interface Member {
  /** Events at or below this revision are older than the member's list: not delivered to it. */
  floor: number;
  handlers: WatchHandlers;
}

interface Group {
  prefix: string;
  members: Set<Member>;
  /** Every event up to this revision has been delivered; Infinity after a resync (not joinable). */
  known: number;
  inner: Watcher | null;
}

export class WatchFanout {
  private readonly groups = new Map<string, Group[]>();

  /** report: a member's handler that threw (the other members still get the events). */
  constructor(
    private readonly open: OpenWatch,
    private readonly report: (prefix: string, err: unknown) => void,
  ) {}

  watch(prefix: string, fromRevision: number, handlers: WatchHandlers): Watcher {
    const member: Member = { floor: fromRevision, handlers };
    let group = this.groups.get(prefix)?.find((g) => g.known <= fromRevision);
    if (!group) group = this.openGroup(prefix, fromRevision);
    group.members.add(member);
    const g = group;
    return { close: () => this.leave(g, member) };
  }

  /** Shared watches open now (for tests and status). */
  count(): number {
    let n = 0;
    for (const gs of this.groups.values()) n += gs.length;
    return n;
  }

  private openGroup(prefix: string, fromRevision: number): Group {
    const group: Group = { prefix, members: new Set(), known: fromRevision, inner: null };
    const list = this.groups.get(prefix) ?? [];
    list.push(group);
    this.groups.set(prefix, list);
    group.inner = this.open(prefix, fromRevision, {
      onEvents: (events, revision) => this.deliver(group, events, revision),
      onResync: () => this.resync(group),
    });
    return group;
  }

  private deliver(group: Group, events: WatchEvent[], revision: number): void {
    if (group.known !== Infinity) group.known = Math.max(group.known, revision);
    // Events come in revision order: when the first is newer than a member's list, all are (the
    // same array for every member, most often).
    const first = events.length > 0 ? revisionOf(events[0]) : Infinity;
    for (const m of [...group.members]) {
      const fresh = first > m.floor ? events : events.filter((e) => revisionOf(e) > m.floor);
      if (fresh.length === 0) continue;
      try {
        m.handlers.onEvents(fresh, revision);
      } catch (err) {
        this.report(group.prefix, err);
      }
    }
  }

  private resync(group: Group): void {
    group.known = Infinity;
    for (const m of [...group.members]) {
      m.floor = -1;
      try {
        m.handlers.onResync?.();
      } catch (err) {
        this.report(group.prefix, err);
      }
    }
  }

  private leave(group: Group, member: Member): void {
    if (!group.members.delete(member) || group.members.size > 0) return;
    group.inner?.close();
    group.inner = null;
    const list = (this.groups.get(group.prefix) ?? []).filter((g) => g !== group);
    if (list.length > 0) this.groups.set(group.prefix, list);
    else this.groups.delete(group.prefix);
  }
}

function revisionOf(e: WatchEvent): number {
  return e.type === 'put' ? e.kv.modRevision : e.modRevision;
}
