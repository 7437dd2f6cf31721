// ZDS on /metrics: is ztunnel connected, and how many announced pods it has acked.
import { Gauge, type Registry } from 'prom-client';
import type { ZdsServer } from '@shunt/zds';

export function registerZdsMetrics(registry: Registry, zds: ZdsServer): void {
  new Gauge({
    name: 'shunt_zds_connected',
    help: 'A ztunnel is connected to the ZDS socket (past its hello).',
    registers: [registry],
    collect() {
      this.set(zds.connected ? 1 : 0);
    },
  });
  new Gauge({
    name: 'shunt_zds_workloads',
    help: 'Pods announced to ztunnel over ZDS, by whether the connected ztunnel acked them.',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const st = zds.status();
      this.set({ state: 'acked' }, st.filter((w) => w.acked).length);
      this.set({ state: 'unacked' }, st.filter((w) => !w.acked).length);
    },
  });
}
