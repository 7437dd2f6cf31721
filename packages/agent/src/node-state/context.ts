// The NodeContext backends start with, from the command-line options and the node probe.
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { BackendName, NodeCapabilities, NodeContext, ProfileName } from '@shunt/core';
import type { AgentLogger } from '../observability/log';
import { pinRoot, resolveBpffs, resolveCgroupRoot } from './paths';

export interface NodeStateOptions {
  bpffsPath?: string;
  cgroupPath?: string;
  cgroupSearch?: string;
  stateDir?: string;
}

/** Where shunt keeps node-local records (a tmpfs on the host, so a reboot forgets them with the rules). */
export const DEFAULT_STATE_DIR = '/run/shunt';

export interface NodePaths {
  bpffs: string;
  /** <bpffs>/shunt */
  pinRoot: string;
  cgroupRoot: string;
  /** Node-local records; each backend that keeps any uses <stateDir>/<backend>. */
  stateDir: string;
}

export function nodePaths(opts: NodeStateOptions): NodePaths {
  const bpffs = resolveBpffs(opts);
  return { bpffs, pinRoot: pinRoot(bpffs), cgroupRoot: resolveCgroupRoot(opts), stateDir: opts.stateDir ?? DEFAULT_STATE_DIR };
}

export function nodeContext(p: NodePaths, caps: NodeCapabilities, nodeName: string, profile: ProfileName, log: AgentLogger): NodeContext {
  return { nodeName, profile, caps, cgroupRoot: p.cgroupRoot, bpffsRoot: p.pinRoot, log };
}

/** Whether a backend left state on this node that a fresh process can adopt: pins, or records. */
export function hasInstalledState(p: NodePaths, backend: BackendName): boolean {
  return existsSync(path.join(p.pinRoot, backend)) || existsSync(path.join(p.stateDir, backend));
}
