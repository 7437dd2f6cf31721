/**
 * A backend's node-wide programs attached from a list of specs (the sockops backend's PROGRAMS,
 * the tc backend's SPLICE_PROGRAMS): cgroup hooks, and the splice guard (sk_msg) and verdict
 * (sk_skb) on the backend's splice sockhash. Each link is pinned under the program's name, so a
 * restarted agent adopts it (BpfLink.fromPin) instead of attaching again.
 */
import * as path from 'node:path';
import type { BpfLink } from './link';
import { BpfObject, type OpenOptions } from './object';
import { bpfObjectPath } from './paths';

export interface AttachSpec {
  /** Built object, relative to bpf/build (bpfObjectPath), e.g. 'tc/redir.bpf.o'. */
  object: string;
  /** Program by function name; also the name of its link pin. */
  program: string;
  /** cgroup: on the cgroup; sk_msg / sk_skb: on the object's splice_socks (the guard and the one-receive-queue verdict). */
  attach: 'cgroup' | 'sk_msg' | 'sk_skb';
}

export interface AttachSpecsOptions {
  /** bpffs directory the objects' pinned maps live in (created by the first load). */
  mapsDir: string;
  /** bpffs directory for the link pins, <linksDir>/<program>; must exist. */
  linksDir: string;
  /** cgroup v2 directory the cgroup programs attach to. */
  cgroupRoot: string;
  /** Passed to every BpfObject.open (map sizes for maps not pinned yet). */
  maxEntries?: OpenOptions['maxEntries'];
}

/**
 * Attaches specs in order, opening each object once (maps pinned in mapsDir), pins every bpf_link
 * as linksDir/<program> and adds each link to `links` as soon as it is attached: when a spec
 * fails, `links` already holds those before it, and the error is thrown. A pre-6.10 sockmap
 * attachment is not a bpf_link and is not pinned: it lives on the pinned sockhash. The objects are
 * closed at the end (links and pins keep programs and maps alive).
 */
export function attachSpecs(specs: readonly AttachSpec[], opts: AttachSpecsOptions, links: Map<string, BpfLink>): void {
  const objects = new Map<string, BpfObject>();
  try {
    for (const spec of specs) {
      let obj = objects.get(spec.object);
      if (!obj) {
        obj = BpfObject.open(bpfObjectPath(spec.object), { pinMaps: opts.mapsDir, maxEntries: opts.maxEntries });
        objects.set(spec.object, obj);
      }
      const prog = obj.program(spec.program);
      const link =
        spec.attach === 'cgroup'
          ? prog.attachCgroup(opts.cgroupRoot)
          : spec.attach === 'sk_msg'
            ? prog.attachSkMsg(obj.map('splice_socks'))
            : prog.attachSkSkbVerdict(obj.map('splice_socks'));
      if (link.kind === 'link') link.pin(path.join(opts.linksDir, spec.program));
      links.set(spec.program, link);
    }
  } finally {
    for (const obj of objects.values()) obj.close();
  }
}
