import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BpfObject, bpfObjectPath, u32, u64 } from './index';
import { makeCgroup, removeCgroup, runId, runNode } from './__fixtures__/env';

interface Inspect {
  objectMapId: number;
  pinMapId: number;
  value7: string | null;
  link: { id: number; type: string; attachType: string; progId: number };
}

describe('pinning: a second process adopts maps and links; unpin cleans up', () => {
  const objectPath = bpfObjectPath('selftest/selftest_pin.bpf.o');
  const pinDir = `/sys/fs/bpf/${runId('pin')}`;
  const mapsDir = path.join(pinDir, 'maps');
  let cgroup: string;

  beforeAll(() => {
    fs.mkdirSync(pinDir);
    cgroup = makeCgroup(runId('pin'));
  });

  afterAll(async () => {
    // Whatever the test left behind: pinned links detach when their pin goes.
    fs.rmSync(pinDir, { recursive: true, force: true });
    if (cgroup) await removeCgroup(cgroup);
  });

  const connectCount = (): bigint => {
    const obj = BpfObject.open(objectPath, { pinMaps: mapsDir });
    try {
      return obj.map('pinned_state').typed(u32, u64).lookup(1) ?? 0n;
    } finally {
      obj.close();
    }
  };

  test('pinned state outlives its creator and is found by another process', async () => {
    const obj = BpfObject.open(objectPath, { pinMaps: mapsDir });
    const state = obj.map('pinned_state');
    expect(state.pinPath).toBe(path.join(mapsDir, 'pinned_state'));
    expect(fs.existsSync(path.join(mapsDir, 'pinned_state'))).toBe(true);
    state.typed(u32, u64).update(7, 77n);
    const mapId = state.id;
    const link = obj.program('pin_connect4').attachCgroup(cgroup);
    link.pin(path.join(pinDir, 'connect4_link'));
    const linkId = link.info().id;
    link.close(); // the pin keeps the attachment
    obj.close();

    const seen = await runNode<Inspect>('adopt.js', ['inspect', objectPath, pinDir]);
    expect(seen).toEqual({
      objectMapId: mapId,
      pinMapId: mapId,
      value7: '77',
      link: { id: linkId, type: 'cgroup', attachType: 'cgroup_inet4_connect', progId: expect.any(Number) },
    });

    // Still attached after both processes dropped their handles: a connect in the cgroup counts.
    const before = connectCount();
    await runNode('socket-workout.js', [], { cgroup });
    expect(connectCount()).toBeGreaterThan(before);

    // Hold the very map the program counts into, so it can be read after its pin is gone (a fresh
    // load would create a fresh, empty map and read 0 whether the program still ran or not).
    const held = BpfObject.open(objectPath, { pinMaps: mapsDir });
    try {
      const heldState = held.map('pinned_state');
      expect(heldState.id).toBe(mapId);
      const counted = () => heldState.typed(u32, u64).lookup(1) ?? 0n;
      // Positive control: while attached, a connect in the cgroup counts in the held map.
      const c0 = counted();
      await runNode('socket-workout.js', [], { cgroup });
      const c1 = counted();
      expect(c1).toBeGreaterThan(c0);

      await runNode('adopt.js', ['cleanup', objectPath, pinDir]);
      expect(fs.existsSync(path.join(pinDir, 'connect4_link'))).toBe(false);
      expect(fs.existsSync(path.join(mapsDir, 'pinned_state'))).toBe(false);

      // Detached: the same connects no longer reach the program, and the kernel lists nothing on the cgroup.
      await runNode('socket-workout.js', [], { cgroup });
      expect(counted()).toBe(c1);
      const attached = execFileSync('bpftool', ['-j', 'cgroup', 'show', cgroup], { encoding: 'utf8', timeout: 10_000 }).trim();
      expect(attached ? JSON.parse(attached) : []).toEqual([]);
    } finally {
      held.close();
    }
    fs.rmSync(path.join(mapsDir, 'pinned_state'), { force: true });
  });
});
