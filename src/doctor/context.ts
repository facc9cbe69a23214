// What several checks need to know, found out once: the underlay (VTEP, interface, MTU), the
// store, and whether a driver answers on the socket. Each is looked up when a check first asks,
// so a check that does not need the store never waits on etcd.
import type { Config } from '../config';
import { causeText } from '../errors';
import { etcdOptions } from '../etcd-settings';
import { pluginCall } from '../cli/socket-client';
import * as dataplane from '../dataplane';
import type { Vtep } from '../network/network-driver';
import { EtcdStore } from '../store/etcd';
import { resolveDefaultMtu, resolveVtep, underlayInterface } from '../underlay';

/** etcd gets less time than a check: the store check still has reads to time after opening. */
const ETCD_DIAL_MS = 3000;
const ETCD_CALL_MS = 2000;
const DRIVER_ANSWER_MS = 2000;
/** The plugin APIs vxnet serves; each answers GetCapabilities without changing anything. */
export const DRIVER_APIS = ['NetworkDriver', 'IpamDriver'];

export interface Underlay {
  vtep: Vtep | null;
  /** The interface whose MTU bounds the inner MTU, null without a VTEP and a default route. */
  iface: string | null;
  ifaceMtu: number | null;
  /** VXNET_MTU, or what vxnet run derives from the interface. */
  innerMtu: number;
}

export interface DriverAnswer {
  answers: boolean;
  /** The plugin APIs that answered GetCapabilities. */
  implements: string[];
  /** Why it did not answer. */
  error: string | null;
}

export interface DoctorContext {
  config: Config;
  /** Rejects with vxnet run's own message when the VTEP settings cannot be used. */
  underlay(): Promise<Underlay>;
  /** The etcd store (store = etcd only); rejects with the reason it cannot be reached. */
  etcd(): Promise<EtcdStore>;
  driver(): Promise<DriverAnswer>;
  close(): Promise<void>;
}

function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | null = null;
  return () => (p ??= fn());
}

export function doctorContext(config: Config): DoctorContext {
  const underlay = once(async (): Promise<Underlay> => {
    const vtep = await resolveVtep(config);
    const iface = underlayInterface(vtep);
    const link = iface ? await dataplane.getLinkByName(iface) : null;
    return { vtep, iface, ifaceMtu: link?.mtu ?? null, innerMtu: await resolveDefaultMtu(config, vtep) };
  });
  const etcd = once(() => EtcdStore.open({ ...etcdOptions(config), dialTimeoutMs: ETCD_DIAL_MS, callTimeoutMs: ETCD_CALL_MS }));
  // GetCapabilities, not Plugin.Activate: an Activate tells the driver that dockerd restarted,
  // and the doctor must not set off the reconcile that follows.
  const driver = once(async (): Promise<DriverAnswer> => {
    const implemented: string[] = [];
    for (const api of DRIVER_APIS) {
      try {
        const reply = await pluginCall(config.socket, `${api}.GetCapabilities`, undefined, DRIVER_ANSWER_MS);
        if (reply.status === 200) implemented.push(api);
      } catch (err) {
        return { answers: false, implements: [], error: causeText(err) };
      }
    }
    return { answers: true, implements: implemented, error: null };
  });
  let etcdAsked = false;
  return {
    config,
    underlay,
    etcd: () => {
      etcdAsked = true;
      return etcd();
    },
    driver,
    async close() {
      if (etcdAsked) await etcd().then((s) => s.close(), () => undefined);
      dataplane.closeRtnl();
    },
  };
}
