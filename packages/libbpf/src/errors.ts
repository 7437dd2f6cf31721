/**
 * Every failure from the kernel or libbpf surfaces as a BpfError: errno name, the
 * operation, the object/program/map/path it concerns, and the verifier log when a program
 * load is refused.
 */
export class BpfError extends Error {
  override readonly name = 'BpfError';
  /** errno name, e.g. 'ENOENT', 'EACCES', or libbpf's own 'LIBBPF_ERRNO__FORMAT'. */
  readonly code: string;
  readonly errno: number;
  /** what was being done: 'open', 'load', 'lookup', 'attach cgroup_inet4_connect', ... */
  readonly op: string;
  /** what it was done to: object path, 'map test_hash', 'program foo', a cgroup or netns path. */
  readonly target: string;
  readonly detail?: string;
  readonly verifierLog?: string;

  constructor(init: {
    errno: number;
    code: string;
    description?: string;
    op: string;
    target: string;
    detail?: string;
    verifierLog?: string;
  }) {
    super(BpfError.compose(init));
    this.errno = init.errno;
    this.code = init.code;
    this.op = init.op;
    this.target = init.target;
    if (init.detail) this.detail = init.detail;
    if (init.verifierLog) this.verifierLog = init.verifierLog;
  }

  private static compose(init: {
    code: string;
    description?: string;
    op: string;
    target: string;
    detail?: string;
    verifierLog?: string;
  }): string {
    let msg = `${init.op} ${init.target}: ${init.code}`;
    if (init.description) msg += ` (${init.description})`;
    if (init.detail) msg += `: ${init.detail}`;
    if (init.verifierLog) {
      // The verifier's last lines name the instruction and the reason; the whole log
      // stays on .verifierLog.
      const lines = init.verifierLog.trimEnd().split('\n').filter((l) => l.trim() !== '' && !/^(processed \d+ insns|verification time)/.test(l));
      msg += `\nverifier log (last lines):\n  ${lines.slice(-4).join('\n  ')}`;
    }
    return msg;
  }
}

/** Errors raised on the TypeScript side for arguments the kernel would reject anyway. */
export function invalidArgument(op: string, target: string, detail: string): BpfError {
  return new BpfError({ errno: 22, code: 'EINVAL', description: 'Invalid argument', op, target, detail });
}

export function notFound(op: string, target: string, detail: string): BpfError {
  return new BpfError({ errno: 2, code: 'ENOENT', description: 'No such file or directory', op, target, detail });
}
