import { existsSync } from 'node:fs';
import { NetlinkError } from './errors';
import { runIp, runIpJson } from './run';

/** Where iproute2 keeps named network namespaces. */
export const NETNS_RUN_DIR = '/run/netns';

const NETNS_NAME_RE = /^[A-Za-z0-9_.-]{1,200}$/;

function checkName(name: string): string {
  if (!NETNS_NAME_RE.test(name) || name === '.' || name === '..') {
    throw new Error(`invalid netns name ${JSON.stringify(name)}: use [A-Za-z0-9_.-]`);
  }
  return name;
}

export function netnsPath(name: string): string {
  return `${NETNS_RUN_DIR}/${checkName(name)}`;
}

/** Creates a named netns (a bind-mounted file under /run/netns) and returns its path. Fails if it exists. */
export async function createNetns(name: string): Promise<string> {
  await runIp(['netns', 'add', checkName(name)]);
  return netnsPath(name);
}

/** Deletes a named netns; `ignoreMissing` makes it idempotent. */
export async function deleteNetns(name: string, opts: { ignoreMissing?: boolean } = {}): Promise<void> {
  if (opts.ignoreMissing && !existsSync(netnsPath(name))) return;
  try {
    await runIp(['netns', 'delete', checkName(name)]);
  } catch (e) {
    if (opts.ignoreMissing && e instanceof NetlinkError && e.notFound) return;
    throw e;
  }
}

/** Names of all named netns. */
export async function listNetns(): Promise<string[]> {
  const rows = await runIpJson<{ name: string }>(['netns', 'list']);
  return rows.map((r) => r.name);
}
