/** Network namespace helpers: run code inside a netns on this thread, read netns cookies. */
import { native } from './native';

/**
 * Runs fn with the calling thread inside the netns at path, and always switches back,
 * also when fn throws. fn must be synchronous: an await would let other JS run in the
 * wrong namespace.
 */
export function withNetns<T>(netnsPath: string, fn: () => T): T {
  const original = native.netnsEnter(netnsPath);
  try {
    const result = fn();
    if (result instanceof Promise) throw new Error('withNetns: fn must be synchronous');
    return result;
  } finally {
    native.netnsRestore(original);
  }
}

/** The cookie BPF programs see via bpf_get_netns_cookie() for sockets in that netns. */
export function netnsCookie(netnsPath: string): bigint {
  return native.netnsCookie(netnsPath);
}

/**
 * Index of an interface in the netns at path (if_nametoindex: an ioctl under RCU, no rtnl_lock,
 * unlike a tcx link info read); throws naming the interface when it is not there.
 */
export function ifIndexIn(netnsPath: string, ifname: string): number {
  return withNetns(netnsPath, () => native.ifNameToIndex(ifname, `in netns ${netnsPath}`));
}
