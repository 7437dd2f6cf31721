import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BpfError, BpfObject, bpfObjectPath, cgroup2Mount } from './index';

function thrown(fn: () => unknown): BpfError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BpfError);
    return err as BpfError;
  }
  throw new Error('expected a BpfError');
}

describe('bad input becomes a typed error that says what and where', () => {
  let tmp: string;
  let obj: BpfObject;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'shunt-libbpf-'));
    obj = BpfObject.open(bpfObjectPath('selftest/selftest.bpf.o'));
  });
  afterAll(() => {
    obj?.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('missing object file', () => {
    const e = thrown(() => BpfObject.open(path.join(tmp, 'nope.bpf.o')));
    expect(e).toMatchObject({ code: 'ENOENT', op: 'open', target: path.join(tmp, 'nope.bpf.o') });
    expect(e.message).toContain('no such BPF object file');
  });

  test('corrupt object file', () => {
    const file = path.join(tmp, 'corrupt.bpf.o');
    const real = fs.readFileSync(bpfObjectPath('selftest/selftest.bpf.o'));
    fs.writeFileSync(file, Buffer.concat([real.subarray(0, 64), Buffer.alloc(256, 0x5a)]));
    const e = thrown(() => BpfObject.open(file));
    expect(e.op).toBe('open');
    expect(e.target).toBe(file);
    expect(e.code).toMatch(/^(LIBBPF_ERRNO__|E)/);
    expect(e.message).toContain(file);

    const text = path.join(tmp, 'text.bpf.o');
    fs.writeFileSync(text, 'not an ELF file\n');
    expect(thrown(() => BpfObject.open(text))).toMatchObject({ code: 'LIBBPF_ERRNO__FORMAT', target: text });
  });

  test('unknown program and map names list what the object has', () => {
    const e = thrown(() => obj.program('selftest_nope'));
    expect(e).toMatchObject({ code: 'ENOENT', op: 'find program' });
    expect(e.message).toMatch(/no program 'selftest_nope'; it has: .*selftest_connect4/);
    expect(thrown(() => obj.map('nope_map')).message).toMatch(/no map 'nope_map'; it has: .*hook_counters/);
  });

  test('attach to a missing cgroup', () => {
    const missing = path.join(cgroup2Mount(), 'shunt-no-such-cgroup');
    const e = thrown(() => obj.program('selftest_connect4').attachCgroup(missing));
    expect(e).toMatchObject({ code: 'ENOENT', op: 'attach cgroup_inet4_connect', target: 'program selftest_connect4' });
    expect(e.message).toContain(`cannot open cgroup ${missing}`);
  });

  test('attach a non-cgroup program to a cgroup', () => {
    // a path that does not exist, so a regression of the type check cannot attach anything
    const e = thrown(() => obj.program('selftest_tc_legacy').attachCgroup(path.join(cgroup2Mount(), 'shunt-no-such-cgroup')));
    expect(e.message).toBe(
      "attach cgroup program selftest_tc_legacy: EINVAL (Invalid argument): program type sched_cls (section 'tc') cannot attach to a cgroup",
    );
  });

  test('attach to a missing interface (current netns)', () => {
    const e = thrown(() => obj.program('selftest_tcx_ingress').attachTc('shuntnope1', 'ingress'));
    expect(e).toMatchObject({ code: 'ENODEV', op: 'find interface', target: 'shuntnope1' });
  });

  test('a program the verifier rejects: program name, errno and the verifier log', () => {
    const file = bpfObjectPath('selftest/selftest_broken.bpf.o');
    const e = thrown(() => BpfObject.open(file));
    expect(e).toMatchObject({ code: 'EACCES', op: 'load', target: `${file} program broken_connect4` });
    expect(e.verifierLog).toContain("invalid mem access 'map_value_or_null'");
    expect(e.message).toContain("invalid mem access 'map_value_or_null'");
    expect(e.message).toContain('broken_connect4');
  });

  test('pinned-map objects need a pin directory instead of defaulting to /sys/fs/bpf', () => {
    const e = thrown(() => BpfObject.open(bpfObjectPath('selftest/selftest_pin.bpf.o')));
    expect(e.message).toMatch(/map 'pinned_state' is declared with LIBBPF_PIN_BY_NAME; pass pinMaps/);
  });

  test('using a closed object or map', () => {
    const o = BpfObject.open(bpfObjectPath('selftest/selftest.bpf.o'));
    const m = o.map('test_lru');
    o.close();
    expect(thrown(() => m.keys())).toMatchObject({ code: 'EBADF', target: 'map test_lru' });
    expect(thrown(() => o.program('selftest_connect4'))).toMatchObject({ code: 'EBADF' });
  });
});
