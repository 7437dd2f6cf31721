// The durable record of what this backend installed: one small JSON file per pod under the state
// directory (default /run/shunt/iptables, on tmpfs: netns and their rules do not survive a reboot
// either). A restarted agent, `shunt status` and `shunt cleanup` read it to find the pods' netns,
// the iptables variant, the families and the TPROXY mark/table that were used, instead of
// scanning every netns on the node. Files are replaced atomically (write + rename), so a reader
// sees the old record or the new one, never half of one.

import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { PodRef } from '@shunt/core';
import type { Family } from './addr';
import type { NetnsIdentity } from './netns-identity';
import type { IptablesVariant } from './options';
import { processAlive } from '@shunt/netlink';

export const DEFAULT_STATE_DIR = '/run/shunt/iptables';
export const RECORD_FORMAT = 'shunt-iptables-pod/1';
const SUFFIX = '.json';

export interface PodRecord {
  format: typeof RECORD_FORMAT;
  pod: PodRef;
  netnsPath: string;
  netns: NetnsIdentity;
  variant: IptablesVariant;
  /** Families our rules may be in. */
  families: Family[];
  /** TPROXY policy routing (mark rule + local route) may be installed, with this mark and table. */
  policyRouting: boolean;
  tproxyMark: number;
  tproxyTable: number;
  /** Ambient's in-pod connmark rule (`fwmark 0x111/0xfff pref 32764 lookup 100`) and its local route may be installed. */
  inpodRouting?: boolean;
  /**
   * Written before a change that widens what may be installed (so a crash mid-apply still leaves
   * a record cleanup can use); cleared once the change is in.
   */
  pending: boolean;
  /** planFingerprint of the rules last applied (informational: observe() reads the kernel). */
  fingerprint: string;
  updatedAt: string;
}

export interface InvalidRecord {
  file: string;
  error: string;
}

/** File name of a pod's record: the uid, with anything but [A-Za-z0-9_-] percent-encoded. */
export function recordFileName(uid: string): string {
  if (!uid) throw new Error('pod uid is empty: cannot name its iptables state record');
  return uid.replace(/[^A-Za-z0-9_-]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`) + SUFFIX;
}

function isFamilyList(v: unknown): v is Family[] {
  return Array.isArray(v) && v.length > 0 && v.every((f) => f === 4 || f === 6);
}

/** Checks a parsed record field by field; throws naming the first bad field. */
export function validateRecord(v: unknown): PodRecord {
  const bad = (field: string, value: unknown) => new Error(`${field}=${JSON.stringify(value)} is not valid`);
  if (typeof v !== 'object' || v === null) throw bad('record', v);
  const r = v as Record<string, unknown>;
  if (r.format !== RECORD_FORMAT) throw bad('format', r.format);
  const pod = r.pod as Record<string, unknown> | undefined;
  for (const k of ['uid', 'namespace', 'name'] as const) if (typeof pod?.[k] !== 'string' || pod[k] === '') throw bad(`pod.${k}`, pod?.[k]);
  if (typeof r.netnsPath !== 'string' || !r.netnsPath.startsWith('/')) throw bad('netnsPath', r.netnsPath);
  const ns = r.netns as Record<string, unknown> | undefined;
  if (!Number.isInteger(ns?.dev) || !Number.isInteger(ns?.inode)) throw bad('netns', ns);
  if (ns!.cookie !== undefined && (typeof ns!.cookie !== 'string' || !/^[0-9]+$/.test(ns!.cookie))) throw bad('netns.cookie', ns!.cookie);
  if (r.variant !== 'legacy' && r.variant !== 'nft') throw bad('variant', r.variant);
  if (!isFamilyList(r.families)) throw bad('families', r.families);
  if (typeof r.policyRouting !== 'boolean') throw bad('policyRouting', r.policyRouting);
  if (r.inpodRouting !== undefined && typeof r.inpodRouting !== 'boolean') throw bad('inpodRouting', r.inpodRouting);
  for (const k of ['tproxyMark', 'tproxyTable'] as const) if (!Number.isInteger(r[k]) || (r[k] as number) < 1) throw bad(k, r[k]);
  if (typeof r.pending !== 'boolean') throw bad('pending', r.pending);
  return r as unknown as PodRecord;
}

/** statfs f_type of tmpfs (linux/magic.h). */
const TMPFS_MAGIC = 0x01021994;

export class StateStore {
  /** The directory exists (made once; a write that finds it gone makes it again). */
  private dirMade = false;
  /**
   * Whether a record is fsync'ed before its rename. Not on tmpfs (the default /run): fsync makes a
   * file survive a power loss, which a tmpfs does not, nor do the netns and rules it describes;
   * it cost a disk-backed state dir a flush per record, two per enrolled pod.
   */
  private syncs: Promise<boolean> | undefined;

  constructor(readonly dir: string) {}

  private needsSync(): Promise<boolean> {
    this.syncs ??= fs.statfs(this.dir).then(
      (st) => st.type !== TMPFS_MAGIC,
      () => true,
    );
    return this.syncs;
  }

  fileOf(uid: string): string {
    return path.join(this.dir, recordFileName(uid));
  }

  /** Replaces the pod's record atomically (temp file in the same directory, fsync, rename). */
  async write(rec: PodRecord): Promise<void> {
    if (!this.dirMade) {
      await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
      this.dirMade = true;
    }
    const file = this.fileOf(rec.pod.uid);
    const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(tmp, 'w', 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      // Someone removed the directory since: make it again, once.
      await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
      fh = await fs.open(tmp, 'w', 0o600);
    }
    try {
      await fh.writeFile(`${JSON.stringify(rec, null, 2)}\n`);
      if (await this.needsSync()) await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await fs.rename(tmp, file);
    } catch (e) {
      await fs.rm(tmp, { force: true });
      throw e;
    }
  }

  async remove(uid: string): Promise<void> {
    await fs.rm(this.fileOf(uid), { force: true });
  }

  /** Every record in the directory; unreadable or invalid files are listed apart, not thrown. */
  async list(): Promise<{ records: PodRecord[]; invalid: InvalidRecord[] }> {
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { records: [], invalid: [] };
      throw e;
    }
    const records: PodRecord[] = [];
    const invalid: InvalidRecord[] = [];
    for (const name of names.sort()) {
      if (!name.endsWith(SUFFIX)) continue; // temp files of a writer (ours or a concurrent one)
      const file = path.join(this.dir, name);
      try {
        const rec = validateRecord(JSON.parse(await fs.readFile(file, 'utf8')));
        if (recordFileName(rec.pod.uid) !== name) throw new Error(`pod.uid=${JSON.stringify(rec.pod.uid)} does not match the file name`);
        records.push(rec);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // removed while we listed
        invalid.push({ file, error: (e as Error).message });
      }
    }
    return { records, invalid };
  }

  /** Removes the directory if nothing is left in it (uninstall leaves no trace); never fails. */
  async removeIfEmpty(): Promise<void> {
    await fs.rmdir(this.dir).catch(() => undefined);
  }

  /** Temp files left by a writer that died mid-write (not ones of live processes). */
  async removeStaleTemps(): Promise<string[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch {
      return [];
    }
    const removed: string[] = [];
    for (const name of names) {
      const m = /\.tmp-(\d+)-[0-9a-f]+$/.exec(name);
      if (!m || processAlive(Number(m[1]))) continue;
      await fs.rm(path.join(this.dir, name), { force: true });
      removed.push(name);
    }
    return removed;
  }
}

