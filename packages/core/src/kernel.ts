// Kernel release strings ("6.18.44-fc-v657", "4.18.0-553.el8_10.x86_64", "5.10.0-28-amd64") as numbers.
import type { KernelVersion } from './types';

export function parseKernelRelease(release: string): KernelVersion {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(release.trim());
  if (!m) throw new Error(`cannot parse kernel release ${JSON.stringify(release)}`);
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3] ?? 0) };
}

export function kernel(text: string): KernelVersion {
  return parseKernelRelease(text);
}

export function compareKernel(a: KernelVersion, b: KernelVersion): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

export function formatKernel(v: KernelVersion): string {
  return `${v.major}.${v.minor}${v.patch ? `.${v.patch}` : ''}`;
}
