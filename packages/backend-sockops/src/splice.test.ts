import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { DEFAULT_GUARD, DEFAULT_SPLICE, effectiveSplice, probeSpliceGuard, validGuard, validSplice } from './splice';
import { SockopsBackend, SockopsBackendError } from './backend';

describe('splice setting', () => {
  it('defaults to auto: guarded, one receive queue per spliced socket (splice-short-read / splice-safety e2e suites)', () => {
    expect(DEFAULT_SPLICE).toBe('auto');
  });

  it('auto becomes all where the guard loads and none elsewhere, saying why; all/ports refuse without it', () => {
    const yes = () => ({ available: true, evidence: 'loaded' });
    const no = () => ({ available: false, evidence: 'guard probe refused: EPERM' });
    expect(effectiveSplice('auto', yes)).toMatchObject({ splice: 'all' });
    expect(effectiveSplice('auto', no)).toEqual({ splice: 'none', reason: 'auto: nothing spliced: guard probe refused: EPERM' });
    expect(effectiveSplice('none', no)).toMatchObject({ splice: 'none' });
    expect(effectiveSplice([8080], yes)).toMatchObject({ splice: [8080] });
    expect(() => effectiveSplice('all', no)).toThrow(/splice "all" needs the splice guard, which cannot load here: guard probe refused: EPERM/);
    expect(() => effectiveSplice([8080], no)).toThrow(/splice \[8080\] needs the splice guard/);
  });

  it('the guard probe loads on this kernel (the bulk-safety e2e suite relies on it)', () => {
    expect(probeSpliceGuard()).toMatchObject({ available: true });
  });

  it('without CAP_PERFMON the guard probe refuses, and auto splices nothing, saying why', () => {
    // A child without CAP_PERFMON (and CAP_SYS_ADMIN, which implies it) asks the built probe.
    const dist = path.resolve(__dirname, '../dist/splice.js');
    expect(fs.existsSync(dist)).toBe(true);
    const js = `const s=require(${JSON.stringify(dist)});const p=s.probeSpliceGuard();console.log(JSON.stringify({p,e:s.effectiveSplice('auto',()=>p)}))`;
    // setpriv (util-linux): root's capabilities at exec are its bounding set, so dropping from it is enough.
    const r = spawnSync('setpriv', ['--bounding-set', '-perfmon,-sys_admin', '--', process.execPath, '-e', js], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { p: { available: boolean; evidence: string }; e: { splice: string; reason: string } };
    expect(out.p.available).toBe(false);
    expect(out.p.evidence).toMatch(/guard probe refused: .*EPERM.*needs CAP_BPF \+ CAP_PERFMON/);
    expect(out.e).toMatchObject({ splice: 'none', reason: expect.stringMatching(/^auto: nothing spliced: guard probe refused/) });
  });

  it('guard bounds: defaults, overrides, and bad values named', () => {
    expect(validGuard(undefined)).toEqual(DEFAULT_GUARD);
    expect(validGuard({ queueCap: 8 << 20 })).toEqual({ ...DEFAULT_GUARD, queueCap: 8 << 20 });
    expect(() => validGuard({ queueCap: 0 })).toThrow(/splice guard queueCap 0 is not a byte count/);
    expect(() => validGuard({ smallMsg: 1.5 })).toThrow(/splice guard smallMsg 1.5 is not a byte count/);
    expect(validGuard({ shortConns: 0 })).toEqual({ ...DEFAULT_GUARD, shortConns: 0 });
    expect(() => validGuard({ shortConns: 256 })).toThrow(/splice guard shortConns 256 is not a connection count \(0-255, 0 = always splice\)/);
    expect(() => validGuard({ shortConns: -1 })).toThrow(/shortConns -1/);
    expect(() => validGuard({ queueCap: 1024, smallQueue: 4096 })).toThrow(/smallQueue 4096 exceeds queueCap 1024/);
  });

  it('canonicalises port lists; an empty list is none', () => {
    expect(validSplice([9080, 8080, 9080])).toEqual([8080, 9080]);
    expect(validSplice([])).toBe('none');
    expect(validSplice('all')).toBe('all');
    expect(validSplice('none')).toBe('none');
    expect(validSplice('auto')).toBe('auto');
  });

  it.each<[string, unknown, RegExp]>([
    ['port 0', [8080, 0], /splice port 0 is not a port \(1-65535\)/],
    ['port 70000', [70000], /splice port 70000 is not a port/],
    ['a fraction', [80.5], /splice port 80.5 is not a port/],
    ['a string port', ['8080'], /splice port "8080" is not a port/],
    ['an unknown word', 'some', /splice "some" is not 'auto', 'all', 'none' or a list of ports/],
    ['1025 ports', Array.from({ length: 1025 }, (_, i) => i + 1), /1025 splice ports, at most 1024/],
  ])('rejects %s naming the value', (_what, bad, message) => {
    expect(() => validSplice(bad)).toThrow(message);
  });

  it('the backend refuses a bad setting at construction, before touching the kernel', () => {
    expect(() => new SockopsBackend({ splice: [8080, 65536] })).toThrow(SockopsBackendError);
    expect(() => new SockopsBackend({ splice: [8080, 65536] })).toThrow(/sockops: splice port 65536 is not a port/);
  });
});
