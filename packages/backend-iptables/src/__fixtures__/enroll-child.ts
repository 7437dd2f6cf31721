// Process "A" of the adoption tests: enrolls the pods it is given with a backend whose records go
// to the given state directory, then stops without cleanup (as an agent being upgraded would) and
// prints what it installed. Run with `node -r ./ts-register.js enroll-child.ts` and a JSON
// argument {variant, stateDir, caps, pods}.
import type { MeshPod, NodeCapabilities } from '@shunt/core';
import { IptablesBackend } from '../backend';
import type { IptablesVariant } from '../options';

interface ChildInput {
  variant: IptablesVariant;
  stateDir: string;
  caps: NodeCapabilities;
  pods: MeshPod[];
}

async function main(): Promise<void> {
  const input = JSON.parse(process.argv[2] ?? '') as ChildInput;
  const backend = new IptablesBackend({ variant: input.variant, stateDir: input.stateDir });
  const quiet = { debug() {}, info() {}, warn() {}, error() {} };
  await backend.start({ nodeName: 'child', profile: 'istio-sidecar', caps: input.caps, cgroupRoot: '/', bpffsRoot: '/sys/fs/bpf/shunt', log: quiet });
  for (const pod of input.pods) await backend.enroll(pod);
  const state = await backend.observe();
  await backend.stop({ cleanup: false });
  process.stdout.write(JSON.stringify({ pid: process.pid, fingerprints: Object.fromEntries(state.pods.map((p) => [p.uid, p.fingerprint])) }));
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});
