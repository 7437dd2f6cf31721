import { firstValueFrom, from, toArray } from 'rxjs';
import type { ReconcilerInput } from '../sources/events';
import { testMeshPod } from '../testing/mesh-pod';
import { rejectPodsBackendCannotServe } from './pod-support';

describe('rejectPodsBackendCannotServe', () => {
  const vm = { ...testMeshPod('vm'), capture: { rerouteInterfaces: ['net1'] } };
  const web = testMeshPod('web');
  const events: ReconcilerInput[] = [{ type: 'upsert', pod: vm }, { type: 'upsert', pod: web }, { type: 'delete', pod: vm }, { type: 'synced' }];
  const run = (backend: Parameters<typeof rejectPodsBackendCannotServe>[0]) => firstValueFrom(from(events).pipe(rejectPodsBackendCannotServe(backend), toArray()));

  it('turns an upsert the backend cannot serve into a reject with its reasons; passes the rest', async () => {
    const out = await run({ name: 'sockops', supportPod: (p) => (p.capture?.rerouteInterfaces ? { ok: false, reasons: ['istio.io/reroute-virtual-interfaces="net1": no'] } : { ok: true }) });
    expect(out[0]).toEqual({ type: 'reject', pod: { uid: vm.uid, namespace: vm.namespace, name: 'vm' }, reason: 'backend sockops cannot serve this pod: istio.io/reroute-virtual-interfaces="net1": no' });
    expect(out.slice(1)).toEqual(events.slice(1));
  });

  it('is a no-op for backends without supportPod and for pods that need no redirect', async () => {
    expect(await run({ name: 'iptables' })).toEqual(events);
    const out = await firstValueFrom(
      from([{ type: 'upsert', pod: { ...vm, membership: 'none' } } as ReconcilerInput]).pipe(rejectPodsBackendCannotServe({ name: 'sockops', supportPod: () => ({ ok: false, reasons: ['x'] }) }), toArray()),
    );
    expect(out[0]?.type).toBe('upsert');
  });
});
