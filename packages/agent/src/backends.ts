// Every backend this build ships, in no particular order (selection orders them per profile).
import path from 'node:path';
import type { ProfileName, RedirectBackend } from '@shunt/core';
import { IptablesBackend } from '@shunt/backend-iptables';
import { SockopsBackend, type SpliceSetting } from '@shunt/backend-sockops';
import { TcBackend } from '@shunt/backend-tc';
import { netnsCookie } from '@shunt/libbpf';

export interface BackendSettings {
  /** The profile the agent serves: backends that cannot serve it say so in support(). */
  profile?: ProfileName;
  /** Node-local records directory (see NodePaths.stateDir). */
  stateDir: string;
  /** sockops: which connections to splice (default: the backend's, auto); tc: 'none' turns its splicing off. */
  splice?: SpliceSetting;
  /** sockops: pods the maps hold. */
  maxPods?: number;
}

export function createBackends(s: BackendSettings): RedirectBackend[] {
  return [
    new SockopsBackend({ ...(s.splice ? { splice: s.splice } : {}), ...(s.maxPods ? { maxPods: s.maxPods } : {}) }),
    // Ambient pods: tcx programs on each pod's eth0 inside its netns (pins under <bpffsRoot>/tc).
    // The agent's splice setting turns its app <-> ztunnel splicing off ('none') or leaves it 'auto'
    // (tc has no per-port list: what ztunnel relays is one kind of connection).
    new TcBackend({ splice: s.splice === 'none' ? 'none' : 'auto' }),
    new IptablesBackend({
      stateDir: path.join(s.stateDir, 'iptables'),
      netnsCookie,
      ...(s.profile ? { profile: s.profile } : {}),
    }),
  ];
}
