import { DEFAULT_MAX_PODS, PER_POD, mapSizes } from './capacity';

test('every per-pod map derives from maxPods and the per-pod need', () => {
  const s = mapSizes(DEFAULT_MAX_PODS);
  expect(s.pod_cfg).toBe(1024);
  expect(s.pod_meta).toBe(1024);
  expect(s.pod_by_ip).toBe(1024 * PER_POD.ips);
  expect(s.port_sel).toBe((1024 + 64) * PER_POD.ports);
  expect(s.cidr4).toBe((1024 + 64) * PER_POD.cidrs);
  expect(s.inbound_listener).toBe(1024 * PER_POD.listeners);
  // Per-connection tables keep the size they had before the setting existed, and grow past it.
  expect(s.orig_by_tuple).toBe(65_536);
  expect(mapSizes(10_000).orig_by_tuple).toBe(160_000);
  expect(mapSizes(10_000).pod_cfg).toBe(10_000);
});

test('rejects what is not a pod count', () => {
  for (const bad of [0, -1, 1.5, NaN, 70_000]) expect(() => mapSizes(bad)).toThrow(/maxPods must be an integer 1..65536/);
});
