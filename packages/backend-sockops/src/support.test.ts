// The backend's support() is the core's rule (so the core's selection table tests what runs), and
// the rule covers every hook and helper the programs in bpf/sockops use: a new program or helper
// call without a probed feature fails here instead of at start() on some customer's kernel.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BPF_FEATURE_PROBES, CAPABILITY_FIXTURES, SUPPORT_RULES, supportFromRules, type FeatureName } from '@shunt/core';
import { SockopsBackend } from './backend';

const BPF_DIR = path.resolve(__dirname, '../../../bpf/sockops');

describe('support()', () => {
  it.each(Object.keys(CAPABILITY_FIXTURES) as (keyof typeof CAPABILITY_FIXTURES)[])('%s: same verdict and reasons as the core rule', (name) => {
    const caps = CAPABILITY_FIXTURES[name];
    expect(new SockopsBackend().support(caps)).toEqual(supportFromRules('sockops', caps));
  });

  it('runs on 5.15+ and backports, not on 5.10 (no get_netns_cookie in sock_ops/sk_msg/sockopt)', () => {
    const b = new SockopsBackend();
    expect(b.support(CAPABILITY_FIXTURES['5.15'])).toEqual({ ok: true });
    expect(b.support(CAPABILITY_FIXTURES['backport-4.18'])).toEqual({ ok: true });
    const r = b.support(CAPABILITY_FIXTURES['5.10']);
    expect(r).toEqual({ ok: false, reasons: [expect.stringMatching(/^helper:get_netns_cookie unavailable .*get_netns_cookie from sock_ops: NO/)] });
  });
});

/** Program type and the feature that proves the hook, by ELF section name. */
const SECTIONS: Record<string, { progType: string; feature: FeatureName }> = {
  'cgroup/connect4': { progType: 'cgroup_sock_addr', feature: 'prog:cgroup_sock_addr' },
  'cgroup/connect6': { progType: 'cgroup_sock_addr', feature: 'prog:cgroup_sock_addr' },
  'cgroup/sendmsg4': { progType: 'cgroup_sock_addr', feature: 'attach:cgroup_udp_sendmsg' },
  'cgroup/sendmsg6': { progType: 'cgroup_sock_addr', feature: 'attach:cgroup_udp_sendmsg' },
  'cgroup/recvmsg4': { progType: 'cgroup_sock_addr', feature: 'attach:cgroup_udp_recvmsg' },
  'cgroup/recvmsg6': { progType: 'cgroup_sock_addr', feature: 'attach:cgroup_udp_recvmsg' },
  'cgroup/getpeername4': { progType: 'cgroup_sock_addr', feature: 'attach:cgroup_getpeername' },
  'cgroup/getpeername6': { progType: 'cgroup_sock_addr', feature: 'attach:cgroup_getpeername' },
  'cgroup/getsockopt': { progType: 'cgroup_sockopt', feature: 'prog:cgroup_sockopt' },
  'cgroup/sock_release': { progType: 'cgroup_sock', feature: 'attach:cgroup_sock_release' },
  sockops: { progType: 'sock_ops', feature: 'prog:sock_ops' },
  sk_msg: { progType: 'sk_msg', feature: 'prog:sk_msg' },
  sk_lookup: { progType: 'sk_lookup', feature: 'prog:sk_lookup' },
};

/**
 * Hooks of the splice guard itself: probed by probeSpliceGuard() (guard_probe.bpf.c loads a program
 * of the same section), not backend support features: where they fail, nothing is attached and
 * nothing splices. Their helper calls still need no probe of their own (NO_PROBE).
 */
const GUARD_SECTIONS: Record<string, { progType: string }> = {
  'sk_skb/verdict': { progType: 'sk_skb' },
};
/** Programs of the guard in a section other programs use too: probed the same way, by program name. */
const GUARD_PROGRAMS: Record<string, { progType: string; section: string }> = {
  shunt_splice_release: { progType: 'cgroup_sock', section: 'cgroup/sock_release' },
};

/** Calls that need no probe of their own, and why. */
const NO_PROBE: Record<string, string> = {
  bpf_map_lookup_elem: 'every program type has map access',
  bpf_map_update_elem: 'every program type has map access',
  bpf_map_delete_elem: 'every program type has map access',
  bpf_htons: 'byte-order macro',
  bpf_htonl: 'byte-order macro',
  bpf_ntohs: 'byte-order macro',
  bpf_ntohl: 'byte-order macro',
  bpf_core_field_exists: 'CO-RE relocation, resolved by libbpf at load',
  bpf_sock_ops_cb_flags_set: 'sock_ops since 4.16, below the 4.18 floor',
  'sk_lookup:bpf_sk_assign': "part of prog:sk_lookup's probe",
  'sk_lookup:bpf_sk_release': 'comes with sk_lookup socket lookups (5.9)',
  // The splice guard's reads: probed by probeSpliceGuard() (src/splice.ts, loads guard_probe.bpf.c),
  // not a backend support feature: where it fails the sk_msg program is not attached, nothing splices.
  'sk_msg:bpf_core_cast': 'bpf_rdonly_cast kfunc macro: the splice guard probe',
  'sk_msg:bpf_rdonly_cast': 'kfunc: the splice guard probe',
  'sk_msg:bpf_probe_read_kernel': 'the splice guard probe',
  'sk_msg:bpf_jiffies64': 'the splice guard probe',
  'sk_msg:bpf_core_type_id_kernel': 'CO-RE relocation, resolved by libbpf at load',
  // The one-receive-queue verdict (a GUARD_SECTIONS hook): guard_probe.bpf.c makes the same calls.
  'sk_skb:bpf_cast_to_kern_ctx': 'kfunc: the splice guard probe',
  'sk_skb:bpf_probe_read_kernel': 'the splice guard probe',
  'sk_skb:bpf_get_socket_cookie': 'the splice guard probe',
  'sk_skb:bpf_skb_adjust_room': 'the splice guard probe',
  'cgroup_sock:bpf_core_cast': 'bpf_rdonly_cast kfunc macro: the splice guard probe',
  'cgroup_sock:bpf_rdonly_cast': 'kfunc: the splice guard probe',
  'cgroup_sock:bpf_get_netns_cookie': 'the splice guard probe',
  'cgroup_sock:bpf_ringbuf_output': 'the splice guard probe',
  'cgroup_sock:bpf_get_socket_cookie': 'the splice guard probe (and the cgroup_sock_release probe dns.bpf.c requires)',
  'cgroup_sock:bpf_core_field_offset': 'CO-RE relocation, resolved by libbpf at load',
  'cgroup_sock:bpf_core_type_id_kernel': 'CO-RE relocation, resolved by libbpf at load',
};

interface CFunction {
  name: string;
  /** The ELF section of a program (SEC line right above it), undefined for helpers of ours. */
  section?: string;
  body: string;
}

/** Top-level functions of a C source: each starts at column 0 and runs to the next one. */
function functions(text: string): CFunction[] {
  const lines = text.split('\n');
  const starts: { line: number; name: string; section?: string }[] = [];
  lines.forEach((l, i) => {
    const m = /^(?:static\s+__always_inline\s+)?[A-Za-z_][\w\s]*?[\s*](\w+)\(/.exec(l);
    if (!m || l.trimEnd().endsWith(';') || l.startsWith('char ')) return;
    const sec = /^SEC\("([^"]+)"\)\s*$/.exec(lines[i - 1] ?? '');
    starts.push({ line: i, name: m[1]!, ...(sec ? { section: sec[1]! } : {}) });
  });
  return starts.map((st, k) => ({ ...st, body: lines.slice(st.line, starts[k + 1]?.line ?? lines.length).join('\n') }));
}

/** bpf_* calls a function makes, following calls into the other functions given. */
function helperCalls(fn: CFunction, all: Map<string, CFunction>, seen = new Set<string>()): Set<string> {
  seen.add(fn.name);
  const body = fn.body.slice(fn.body.indexOf('{'));
  const out = new Set([...body.matchAll(/\b(bpf_\w+)\(/g)].map((m) => m[1]!));
  for (const [name, other] of all) {
    if (!seen.has(name) && new RegExp(`\\b${name}\\(`).test(body)) for (const c of helperCalls(other, all, seen)) out.add(c);
  }
  return out;
}

describe('SUPPORT_RULES.sockops covers bpf/sockops', () => {
  const required = new Set(SUPPORT_RULES.sockops.features.map((r) => r.feature));
  const libFns = functions(fs.readFileSync(path.join(BPF_DIR, 'lib.h'), 'utf8'));
  const files = fs.readdirSync(BPF_DIR).filter((f) => f.endsWith('.bpf.c'));

  it('parses the sources (a parser that finds nothing would pass everything)', () => {
    expect(files.length).toBeGreaterThanOrEqual(7);
    const all = new Map(libFns.map((f) => [f.name, f]));
    expect([...helperCalls(all.get('dns_capture')!, all)]).toEqual(
      expect.arrayContaining(['bpf_get_netns_cookie', 'bpf_get_current_uid_gid', 'bpf_get_socket_cookie', 'bpf_map_update_elem']),
    );
    const dns = functions(fs.readFileSync(path.join(BPF_DIR, 'dns.bpf.c'), 'utf8')).filter((f) => f.section);
    expect(dns.map((f) => f.section)).toEqual(['cgroup/sendmsg4', 'cgroup/sendmsg6', 'cgroup/recvmsg4', 'cgroup/recvmsg6', 'cgroup/sock_release']);
  });

  it.each(files)('%s: every program\'s hook and every helper it calls is a required, probed feature', (file) => {
    const own = functions(fs.readFileSync(path.join(BPF_DIR, file), 'utf8'));
    const all = new Map([...libFns, ...own].map((f) => [f.name, f]));
    const programs = own.filter((f) => f.section);
    expect(programs.length).toBeGreaterThan(0);
    const probeSections = functions(fs.readFileSync(path.join(BPF_DIR, 'guard_probe.bpf.c'), 'utf8')).map((f) => f.section);
    for (const prog of programs) {
      const guard = GUARD_PROGRAMS[prog.name] ?? GUARD_SECTIONS[prog.section!];
      if (guard) {
        expect(probeSections).toContain(prog.section);
        for (const helper of helperCalls(prog, all))
          if (!NO_PROBE[helper] && !NO_PROBE[`${guard.progType}:${helper}`]) throw new Error(`${file}: ${prog.name} calls ${helper}, which the guard probe does not cover`);
        continue;
      }
      const known = SECTIONS[prog.section!];
      if (!known) throw new Error(`${file}: section ${prog.section} has no entry in this test's SECTIONS (add one, and its feature to SUPPORT_RULES.sockops)`);
      expect(required).toContain(known.feature);
      for (const helper of helperCalls(prog, all)) {
        if (NO_PROBE[helper] || NO_PROBE[`${known.progType}:${helper}`]) continue;
        const name = helper.replace(/^bpf_/, '');
        const feature = (Object.entries(BPF_FEATURE_PROBES) as [FeatureName, (typeof BPF_FEATURE_PROBES)[keyof typeof BPF_FEATURE_PROBES]][]).find(([, parts]) =>
          parts.some((p) => p.call.kind === 'helper' && p.call.helper === name && p.call.progType === known.progType),
        )?.[0];
        if (!feature) throw new Error(`${file}: ${prog.name} calls ${helper} from ${known.progType}, which no feature in BPF_FEATURE_PROBES probes`);
        expect(required).toContain(feature);
      }
    }
  });
});
