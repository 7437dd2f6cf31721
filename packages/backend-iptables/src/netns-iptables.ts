// iptables-save / iptables-restore of one family in one pod netns, with the variant the node uses.
// Entered with `nsenter --net=<path>` (through @shunt/netlink's runner), never `ip netns exec`,
// which remounts /sys.

// Run through @shunt/netlink's command pool: a spawn from the agent forks the whole agent on its
// main thread (several ms each at scale); the pool's small shell helpers fork for us.
import { NetlinkError, runPooled as runCommand } from '@shunt/netlink';
import type { Family } from './addr';
import type { IptablesVariant } from './options';

export interface IptablesCommands {
  save: string;
  restore: string;
}

/** Binary names for a variant and family (Debian/Ubuntu/RHEL all ship these names). */
export function commandsFor(variant: IptablesVariant, family: Family): IptablesCommands {
  const base = family === 4 ? 'iptables' : 'ip6tables';
  return { save: `${base}-${variant}-save`, restore: `${base}-${variant}-restore` };
}

export interface IptablesRunOptions {
  variant: IptablesVariant;
  /** Legacy only: seconds to wait for the host-wide xtables lock. */
  lockWaitSeconds: number;
  timeoutMs: number;
}

/** A refused restore: what the binary said, for the caller to wrap with the pod's name. */
export class RestoreRefused extends Error {
  constructor(
    readonly command: readonly string[],
    readonly output: string,
  ) {
    super(output);
  }
}

export class NetnsIptables {
  constructor(
    readonly netnsPath: string,
    private readonly opts: IptablesRunOptions,
  ) {}

  /** The full dump of one family, with counters. */
  async save(family: Family): Promise<string> {
    return runCommand([commandsFor(this.opts.variant, family).save, '-c'], { netns: this.netnsPath, timeoutMs: this.opts.timeoutMs });
  }

  restoreArgv(family: Family): string[] {
    const argv = [commandsFor(this.opts.variant, family).restore, '--noflush'];
    // nft commits through netlink transactions and needs no lock; legacy shares one file lock host-wide.
    if (this.opts.variant === 'legacy') argv.push(`--wait=${this.opts.lockWaitSeconds}`);
    return argv;
  }

  /** Feeds one transaction to iptables-restore --noflush; rejects with RestoreRefused carrying its output. */
  async restore(family: Family, input: string): Promise<void> {
    const argv = this.restoreArgv(family);
    try {
      await runCommand(argv, { netns: this.netnsPath, input, timeoutMs: this.opts.timeoutMs });
    } catch (e) {
      if (e instanceof NetlinkError) throw new RestoreRefused(e.command, e.stderr.trim() || e.message);
      throw e;
    }
  }
}
