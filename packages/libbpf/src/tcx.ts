/**
 * tcx hooks with an explicit position: attach a sched_cls program first or last on an interface's
 * ingress/egress, guarded by the hook's revision, and read a hook back (programs, links and
 * revision, in run order). Interfaces are looked up, and attached, inside opts.netns.
 */
import { BpfLink, type TcDirection } from './link';
import { native } from './native';
import { withNetns } from './netns';
import type { BpfProgram } from './program';
import { invalidArgument } from './errors';

export interface TcxHook {
  /** Bumped by the kernel on every attach/detach on this hook. */
  revision: number;
  progIds: number[];
  /** Link id per program (0: attached without a link). */
  linkIds: number[];
}

export interface TcxAttachOptions {
  netns?: string;
  /** 'last' (after every program there now) or 'first'. */
  position: 'first' | 'last';
  /** Refuse (ESTALE) unless the hook is still at this revision; 0 or undefined: any. */
  expectedRevision?: number;
}

const inNetns = <T>(netns: string | undefined, fn: () => T): T => (netns ? withNetns(netns, fn) : fn());

/** The programs on a tcx hook, in the order they run. */
export function tcxQuery(ifname: string, direction: TcDirection, opts: { netns?: string } = {}): TcxHook {
  const where = `${ifname}${opts.netns ? ` in netns ${opts.netns}` : ''}`;
  return inNetns(opts.netns, () => native.tcxQuery(native.ifNameToIndex(ifname, where), direction, `tcx ${direction} of ${where}`));
}

/** Attaches prog as a tcx link at the given position (see TcxAttachOptions). */
export function attachTcxAt(prog: BpfProgram, ifname: string, direction: TcDirection, opts: TcxAttachOptions): BpfLink {
  if (prog.type !== 'sched_cls') throw invalidArgument('attach tcx', `program ${prog.name}`, `program type is ${prog.type}, not sched_cls`);
  const where = `${ifname}${opts.netns ? ` in netns ${opts.netns}` : ''}`;
  return inNetns(opts.netns, () => {
    const ifindex = native.ifNameToIndex(ifname, where);
    const handle = native.linkTcxAt(prog.fd, ifindex, direction, opts.position, opts.expectedRevision ?? 0, `program ${prog.name} on ${where}`);
    return new BpfLink({ kind: 'link', handle }, `program ${prog.name} (tcx ${direction}, ${opts.position}) on ${where}`);
  });
}

/**
 * attachTcxAt() at the hook's current revision (re-read and retried on ESTALE), done on a libuv
 * pool thread that enters the netns: every tcx attach waits for an RCU grace period (10-20 ms on
 * a busy node), so several attaches in flight share one wait and the event loop never blocks.
 * The program must stay loaded until the promise settles.
 */
export async function attachTcxAsync(prog: BpfProgram, ifname: string, direction: TcDirection, opts: { netns: string; position: 'first' | 'last' }): Promise<BpfLink> {
  if (prog.type !== 'sched_cls') throw invalidArgument('attach tcx', `program ${prog.name}`, `program type is ${prog.type}, not sched_cls`);
  const where = `${ifname} in netns ${opts.netns}`;
  const handle = await native.linkTcxAtAsync(prog.fd, opts.netns, ifname, direction, opts.position, `program ${prog.name} on ${where}`);
  return new BpfLink({ kind: 'link', handle }, `program ${prog.name} (tcx ${direction}, ${opts.position}) on ${where}`);
}

export interface ClsactPlace {
  netns?: string;
  /** cls_bpf handle and priority: explicit, so the filter is found again after a restart. */
  handle: number;
  priority: number;
}

/**
 * Legacy fallback for kernels without tcx: a direct-action cls_bpf filter at an explicit
 * handle/priority on the interface's clsact qdisc (created when missing; createdQdisc says so).
 * Never replaces: a filter already at that handle/priority fails with EEXIST.
 * The returned link is not pinnable; re-create its handle after a restart with clsactLink().
 */
export function attachClsactAt(prog: BpfProgram, ifname: string, direction: TcDirection, at: ClsactPlace): { link: BpfLink; createdQdisc: boolean } {
  if (prog.type !== 'sched_cls') throw invalidArgument('attach tc', `program ${prog.name}`, `program type is ${prog.type}, not sched_cls`);
  const where = `${ifname}${at.netns ? ` in netns ${at.netns}` : ''}`;
  return inNetns(at.netns, () => {
    const ifindex = native.ifNameToIndex(ifname, where);
    const r = native.tcAttachLegacyAt(prog.fd, ifindex, direction, at.handle, at.priority, `program ${prog.name} on ${where}`);
    return { link: clsactHandle(ifname, ifindex, direction, at, `program ${prog.name} (tc ${direction}, prio ${at.priority}) on ${where}`), createdQdisc: r.createdQdisc };
  });
}

function clsactHandle(ifname: string, ifindex: number, direction: TcDirection, at: ClsactPlace, description: string): BpfLink {
  const backing = { kind: 'tc-legacy' as const, ifname, ifindex, direction, handle: at.handle, priority: at.priority };
  return new BpfLink(at.netns ? { ...backing, netns: at.netns } : backing, description);
}

/** Id of the program in the cls_bpf filter at handle/priority, or 0 when there is none. */
export function clsactProgId(ifname: string, direction: TcDirection, at: ClsactPlace): number {
  const where = `${ifname}${at.netns ? ` in netns ${at.netns}` : ''}`;
  return inNetns(at.netns, () => {
    const ifindex = native.ifNameToIndex(ifname, where);
    return native.tcQueryLegacy(ifindex, direction, at.handle, at.priority, `tc ${direction} of ${where}`);
  });
}

/** A handle on a filter attached earlier (e.g. by a previous agent process), for detach(). */
export function clsactLink(ifname: string, direction: TcDirection, at: ClsactPlace): BpfLink {
  const where = `${ifname}${at.netns ? ` in netns ${at.netns}` : ''}`;
  const ifindex = inNetns(at.netns, () => native.ifNameToIndex(ifname, where));
  return clsactHandle(ifname, ifindex, direction, at, `cls_bpf filter (tc ${direction}, prio ${at.priority}) on ${where}`);
}

/** Deletes the interface's clsact qdisc with whatever is on it: only for one the caller created and emptied. */
export function destroyClsact(ifname: string, opts: { netns?: string } = {}): void {
  const where = `${ifname}${opts.netns ? ` in netns ${opts.netns}` : ''}`;
  inNetns(opts.netns, () => native.tcHookDestroy(native.ifNameToIndex(ifname, where), `clsact of ${where}`));
}

/**
 * link.detach() on a pool thread for kernel links (a tcx detach waits for an RCU grace period
 * under rtnl_lock); other kinds detach synchronously. Removes the link's pin and closes it, as
 * detach() does.
 */
export async function detachLinkAsync(link: BpfLink): Promise<void> {
  if (link.kind !== 'link') return link.detach();
  await native.linkDetachAsync(link.fd, link.description);
  if (link.pinPath) link.unpin();
  link.close();
}
