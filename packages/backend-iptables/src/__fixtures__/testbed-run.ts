// The iptables backend on a testbed, as the e2e-*.test.ts files run it. Started on a temp state
// directory (never the node's /run/shunt/iptables) with the core's real iptables probe; ended, in
// the file's afterAll, by stopping it with cleanup (every rule it installed removed), disposing the
// testbed (its netns take whatever rule a failing test left) and removing the temp state
// directories, each step also when the one before failed.

import type { NodeContext } from '@shunt/core';
import type { Testbed } from '@shunt/testbed';
import { IptablesBackend } from '../backend';
import { disposeStateDirs, nodeContext, tempStateDir } from './node';

export async function startBackend(profile?: NodeContext['profile']): Promise<IptablesBackend> {
  const backend = new IptablesBackend({ stateDir: tempStateDir() });
  try {
    await backend.start({ ...(await nodeContext()), ...(profile ? { profile } : {}) });
  } catch (e) {
    await backend.stop({ cleanup: true }).catch(() => undefined);
    throw e;
  }
  return backend;
}

export async function endTestbedRun(backend: IptablesBackend | undefined, tb: Testbed | undefined): Promise<void> {
  try {
    await backend?.stop({ cleanup: true }).catch(() => undefined);
  } finally {
    try {
      await tb?.dispose();
    } finally {
      disposeStateDirs();
    }
  }
}
