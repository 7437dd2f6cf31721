/**
 * BpfLink: one attachment of a program. Kernel bpf_links (cgroup, sk_msg, tcx) can be
 * pinned so they outlive this process and adopted later with fromPin(); legacy
 * attachments (cls_bpf filters, prog_attach on a sockmap) are detached explicitly and
 * cannot be pinned.
 *
 * Closing the last fd of an unpinned kernel link detaches it: keep the BpfLink (or pin
 * it) for as long as the program should stay attached. close() on GC is only a safety
 * net against leaking fds.
 */
import * as fs from 'node:fs';
import { BpfError, invalidArgument } from './errors';
import { native, type FdHandle, type KernelLinkInfo } from './native';
import { withNetns } from './netns';

export type TcDirection = 'ingress' | 'egress';

interface KernelLink {
  kind: 'link';
  handle: FdHandle;
}
interface LegacyTc {
  kind: 'tc-legacy';
  ifname: string;
  ifindex: number;
  direction: TcDirection;
  handle: number;
  priority: number;
  netns?: string;
}
interface LegacyProgAttach {
  kind: 'prog-legacy';
  prog: FdHandle;
  target: FdHandle;
  attachType: string;
}
export type LinkBacking = KernelLink | LegacyTc | LegacyProgAttach;

export class BpfLink {
  private backing: LinkBacking | null;
  private pinnedAt: string | undefined;

  /** @internal created by BpfProgram.attach*() or BpfLink.fromPin() */
  constructor(
    backing: LinkBacking,
    /** human-readable description for errors: 'program x on cgroup /y' */
    readonly description: string,
    pinnedAt?: string,
  ) {
    this.backing = backing;
    this.pinnedAt = pinnedAt;
  }

  /** Adopts a link pinned by this or another process. */
  static fromPin(path: string): BpfLink {
    const handle = native.objGet(path);
    let info: KernelLinkInfo;
    try {
      info = native.linkInfo(native.fdOf(handle), path);
    } catch (err) {
      native.closeFd(handle);
      if (err instanceof BpfError && err.code === 'EINVAL') throw invalidArgument('adopt link', path, 'the pin is not a link');
      throw err;
    }
    return new BpfLink({ kind: 'link', handle }, `${info.type} link ${info.id} from ${path}`, path);
  }

  /** 'link' for kernel bpf_links, 'tc-legacy' for cls_bpf filters, 'prog-legacy' for prog_attach. */
  get kind(): LinkBacking['kind'] {
    return this.live('use').kind;
  }

  get fd(): number {
    const b = this.live('use');
    if (b.kind !== 'link') throw invalidArgument('fd', this.description, `a ${b.kind} attachment has no link fd`);
    return native.fdOf(b.handle);
  }

  get pinPath(): string | undefined {
    return this.pinnedAt;
  }

  /** What the kernel says about the link (id, type, program id, attach type, target). */
  info(): KernelLinkInfo {
    return native.linkInfo(this.fd, this.description);
  }

  /** Pins the link so the attachment survives this process (bpffs path, directory must exist). */
  pin(path: string): void {
    const b = this.live('pin');
    if (b.kind !== 'link')
      throw new BpfError({
        errno: 95,
        code: 'EOPNOTSUPP',
        op: 'pin',
        target: this.description,
        detail: `a ${b.kind} attachment is not a bpf_link and cannot be pinned; it stays until detached`,
      });
    native.objPin(native.fdOf(b.handle), path, this.description);
    this.pinnedAt = path;
  }

  /** Removes the pin; the attachment then lives only as long as open fds (this one). */
  unpin(): void {
    if (!this.pinnedAt) throw invalidArgument('unpin', this.description, 'the link is not pinned by this handle');
    fs.rmSync(this.pinnedAt, { force: true });
    this.pinnedAt = undefined;
  }

  /** Detaches the program now (even if pinned elsewhere), removes this handle's pin, and closes. */
  detach(): void {
    const b = this.live('detach');
    switch (b.kind) {
      case 'link':
        native.linkDetach(native.fdOf(b.handle), this.description);
        break;
      case 'tc-legacy': {
        const run = (): void => native.tcDetachLegacy(b.ifindex, b.direction, b.handle, b.priority, this.description);
        if (b.netns) withNetns(b.netns, run);
        else run();
        break;
      }
      case 'prog-legacy':
        native.progDetachLegacy(native.fdOf(b.prog), native.fdOf(b.target), b.attachType, this.description);
        break;
    }
    if (this.pinnedAt) this.unpin();
    this.close();
  }

  /**
   * Drops this handle. An unpinned kernel link is detached by the kernel when its last fd
   * goes; a pinned one stays. Legacy attachments are unaffected (use detach()).
   */
  close(): void {
    const b = this.backing;
    if (!b) return;
    if (b.kind === 'link') native.closeFd(b.handle);
    if (b.kind === 'prog-legacy') {
      native.closeFd(b.prog);
      native.closeFd(b.target);
    }
    this.backing = null;
  }

  private live(op: string): LinkBacking {
    if (!this.backing)
      throw new BpfError({ errno: 9, code: 'EBADF', op, target: this.description, detail: 'the link is closed or detached' });
    return this.backing;
  }
}
