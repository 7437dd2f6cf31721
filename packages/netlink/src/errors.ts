/** A failed iproute2 (or helper) command: carries the exact argv and its stderr so the cause is visible. */
export class NetlinkError extends Error {
  override readonly name = 'NetlinkError';
  constructor(
    /** The argv that ran, including any `nsenter --net=…` prefix. */
    readonly command: readonly string[],
    /** The netns path the command ran in, or undefined for the caller's own netns. */
    readonly netns: string | undefined,
    readonly stderr: string,
    readonly exitCode: number | null,
    detail?: string,
  ) {
    super(
      `${detail ?? 'command failed'}: \`${command.join(' ')}\`` +
        (exitCode !== null ? ` exited ${exitCode}` : '') +
        (stderr.trim() ? `: ${stderr.trim()}` : ''),
    );
  }

  /** True when stderr says the object already exists (EEXIST from the kernel). */
  get exists(): boolean {
    return /File exists|already exists/i.test(this.stderr);
  }

  /** True when stderr says the object does not exist (ENOENT/ENODEV/ESRCH). */
  get notFound(): boolean {
    return /Cannot find device|No such file|No such process|does not exist|not found/i.test(this.stderr);
  }
}
