/**
 * Policy rules and routes in a network namespace over a raw NETLINK_ROUTE socket (native
 * src/native/rtnl.cc), without spawning iproute2. For hot paths only (the tc backend's per-pod
 * enroll: a `nsenter ip` costs tens of ms on a busy node); everything else uses @shunt/netlink.
 * Only two shapes: `fwmark M/K [iif DEV] lookup T priority P` rules and `local default dev lo table T`.
 */
import * as fs from 'node:fs';
import { BpfError, invalidArgument } from './errors';
import { native, type RtnlOp } from './native';

export type { RtnlOp };

export interface RtnlResult {
  op: RtnlOp;
  /** 0, or the kernel's errno name (EEXIST, ENOENT, ...). */
  errno: number;
  code: string;
}

const ERRNO_NAMES: Record<number, string> = { 0: 'OK', 2: 'ENOENT', 3: 'ESRCH', 17: 'EEXIST', 22: 'EINVAL', 1: 'EPERM', 19: 'ENODEV', 110: 'ETIMEDOUT', 71: 'EPROTO', 97: 'EAFNOSUPPORT' };

function checkOp(op: RtnlOp, netnsPath: string): void {
  const u32 = (v: unknown): boolean => v === undefined || (Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffffffff);
  if ((op.kind !== 'rule' && op.kind !== 'route') || (op.op !== 'add' && op.op !== 'del') || (op.family !== 4 && op.family !== 6))
    throw invalidArgument('rtnetlink', netnsPath, `bad op ${JSON.stringify(op)}`);
  if (!u32(op.table) || op.table === 0 || !u32(op.priority) || !u32(op.mark) || !u32(op.mask))
    throw invalidArgument('rtnetlink', netnsPath, `bad numbers in ${JSON.stringify(op)}`);
  if (op.iif !== undefined && (op.kind !== 'rule' || typeof op.iif !== 'string' || !/^[A-Za-z0-9_.@-]{1,15}$/.test(op.iif)))
    throw invalidArgument('rtnetlink', netnsPath, `bad iif in ${JSON.stringify(op)} (rules only, an interface name)`);
}

/**
 * Applies ops in order inside the netns and returns each one's answer; never throws for a
 * kernel answer (the caller decides which, e.g. EEXIST on add, are fine). 'route add' replaces.
 */
export function rtnlApply(netnsPath: string, ops: RtnlOp[]): RtnlResult[] {
  if (!fs.existsSync(netnsPath)) throw new BpfError({ errno: 2, code: 'ENOENT', op: 'rtnetlink', target: netnsPath, detail: 'netns does not exist' });
  for (const op of ops) checkOp(op, netnsPath);
  const res = native.rtnlApply(netnsPath, ops);
  return ops.map((op, i) => ({ op, errno: res[i] ?? 0, code: ERRNO_NAMES[res[i] ?? 0] ?? `errno ${res[i]}` }));
}
