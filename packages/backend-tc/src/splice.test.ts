/** The splice setting and its resolution (no kernel: the probe and the cgroup are stand-ins). */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TcBackend, TcBackendError } from './backend';
import { effectiveTcSplice, validTcSplice } from './splice';

const loads = () => ({ available: true, evidence: 'loads' });
const refused = () => ({ available: false, evidence: 'guard probe refused: EPERM' });

describe('tc splice setting', () => {
  let cg = '';
  beforeAll(() => {
    // A directory that looks like a cgroup v2 one (what effectiveTcSplice checks for).
    cg = fs.mkdtempSync(path.join(os.tmpdir(), 'shunt-tc-splice-cg-'));
    fs.writeFileSync(path.join(cg, 'cgroup.procs'), '');
  });
  afterAll(() => fs.rmSync(cg, { recursive: true, force: true }));

  test('only auto and none are settings; anything else is refused naming the value', () => {
    expect(validTcSplice('auto')).toBe('auto');
    expect(validTcSplice('none')).toBe('none');
    for (const bad of ['all', [8080], '', null, 1]) expect(() => validTcSplice(bad)).toThrow(`splice ${JSON.stringify(bad)} is not 'auto' or 'none'`);
    expect(() => new TcBackend({ splice: 'all' as never })).toThrow(TcBackendError);
  });

  test('guard bounds are validated as sockops validates them (core validGuard)', () => {
    expect(() => new TcBackend({ guard: { queueCap: 0 } })).toThrow(/tc: splice guard queueCap 0 is not a byte count/);
    expect(() => new TcBackend({ guard: { shortConns: 256 } })).toThrow(/shortConns 256/);
    expect(() => new TcBackend({ guard: { smallQueue: 8 << 20 } })).toThrow(/smallQueue .* exceeds queueCap/);
  });

  test('auto splices where the guard loads and the node cgroup exists, and says why not elsewhere', () => {
    expect(effectiveTcSplice('auto', cg, loads)).toEqual({ on: true, reason: 'auto: guard loads (loads)' });
    expect(effectiveTcSplice('auto', cg, refused)).toEqual({ on: false, reason: 'auto: nothing spliced: guard probe refused: EPERM' });
    expect(effectiveTcSplice('auto', '', loads).on).toBe(false);
    expect(effectiveTcSplice('auto', '', loads).reason).toMatch(/no node cgroup/);
    expect(effectiveTcSplice('auto', path.join(cg, 'missing'), loads).reason).toMatch(/is not a cgroup v2 directory/);
    expect(effectiveTcSplice('none', cg, loads)).toEqual({ on: false, reason: 'splice none' });
  });
});
