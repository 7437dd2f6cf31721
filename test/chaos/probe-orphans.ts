// Probe scratch netns (`shunt-probe-<pid>-…`) whose creating process is gone: what a probe killed
// mid-way leaves behind (a live agent's probe may be running right now, so those are not counted).
import { readdirSync } from 'node:fs';

export function orphanedProbeNetns(): string[] {
  return readdirSync('/var/run/netns').filter((n) => {
    const m = /^shunt-probe-(\d+)-/.exec(n);
    if (!m) return false;
    try {
      process.kill(Number(m[1]), 0);
      return false;
    } catch {
      return true;
    }
  });
}
