// What shunt left in bpffs, read and removed without any backend's help: every pin under
// <bpffs>/shunt/. Pinned links are detached first (removing the pin alone would leave an
// attachment alive while some process holds its fd); then the tree is removed, which frees
// maps and programs nothing else references.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { BpfLink } from '@shunt/libbpf';

export interface PinEntry {
  path: string;
  kind: 'link' | 'other';
}

/** Every pin under `root`, links marked (a pin that is not a link is a map or a program). */
export async function listPins(root: string, limit = 100_000): Promise<PinEntry[]> {
  const out: PinEntry[] = [];
  const walk = async (dir: string): Promise<void> => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await fs.readdir(dir, { withFileTypes: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    for (const e of entries) {
      if (out.length >= limit) return;
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push({ path: p, kind: isLinkPin(p) ? 'link' : 'other' });
    }
  };
  await walk(root);
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

function isLinkPin(p: string): boolean {
  try {
    BpfLink.fromPin(p).close();
    return true;
  } catch {
    return false;
  }
}

/** Detaches every pinned link under `root`, then removes the whole tree. Returns what was there. */
export async function removePins(root: string): Promise<{ links: string[]; others: string[]; errors: string[] }> {
  const pins = await listPins(root);
  const result = { links: [] as string[], others: [] as string[], errors: [] as string[] };
  for (const pin of pins) {
    if (pin.kind === 'link') {
      try {
        BpfLink.fromPin(pin.path).detach();
        result.links.push(pin.path);
      } catch (e) {
        result.errors.push(`${pin.path}: ${(e as Error).message}`);
      }
    } else result.others.push(pin.path);
  }
  await fs.rm(root, { recursive: true, force: true });
  return result;
}
