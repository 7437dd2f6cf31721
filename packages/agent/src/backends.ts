// Every backend this build ships, in no particular order (selection orders them per profile).
import type { RedirectBackend } from '@shunt/core';
import { IptablesBackend } from '@shunt/backend-iptables';
import { SockopsBackend } from '@shunt/backend-sockops';

export function createBackends(): RedirectBackend[] {
  return [new SockopsBackend(), new IptablesBackend()];
}
