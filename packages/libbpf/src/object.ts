/**
 * BpfObject: one *.bpf.o opened and loaded into the kernel. Maps declared with
 * LIBBPF_PIN_BY_NAME are reused from (or pinned into) opts.pinMaps, which is how an
 * agent restart adopts the previous run's state.
 */
import * as fs from 'node:fs';
import { BpfError, notFound } from './errors';
import { BpfMap } from './map';
import { native, type NativeMapInfo, type NativeProgramInfo, type ObjectHandle } from './native';
import { BpfProgram } from './program';

export interface OpenOptions {
  /** bpffs directory for maps declared with pinning; created if missing. */
  pinMaps?: string;
  /**
   * max_entries per map name, replacing the compiled-in sizes before load. A map reused from
   * a pin must be given its pinned size (libbpf refuses to reuse a pin of another size).
   */
  maxEntries?: Record<string, number>;
}

export class BpfObject {
  private handle: ObjectHandle | null;
  private readonly programInfo: NativeProgramInfo[];
  private readonly mapInfo: NativeMapInfo[];
  private readonly programCache = new Map<string, BpfProgram>();
  private readonly mapCache = new Map<string, BpfMap>();

  private constructor(
    readonly path: string,
    handle: ObjectHandle,
  ) {
    this.handle = handle;
    this.programInfo = native.objectPrograms(handle);
    this.mapInfo = native.objectMaps(handle);
  }

  /** Opens and loads the object; throws BpfError (with the verifier log when a program is refused). */
  static open(path: string, opts: OpenOptions = {}): BpfObject {
    if (!fs.existsSync(path)) throw notFound('open', path, 'no such BPF object file (is bpf/ built? run `make -C bpf`)');
    if (opts.pinMaps !== undefined) fs.mkdirSync(opts.pinMaps, { recursive: true });
    return new BpfObject(path, native.openObject(path, opts.pinMaps, opts.maxEntries));
  }

  /** Program by function name (not section name). */
  program(name: string): BpfProgram {
    const cached = this.programCache.get(name);
    if (cached) return cached;
    this.live('find program');
    const info = this.programInfo.find((p) => p.name === name);
    if (!info) throw notFound('find program', this.path, `no program '${name}'; it has: ${this.programNames().join(', ')}`);
    const prog = new BpfProgram(native.dupFd(info.fd, `program ${name}`), info);
    this.programCache.set(name, prog);
    return prog;
  }

  map(name: string): BpfMap {
    const cached = this.mapCache.get(name);
    if (cached) return cached;
    this.live('find map');
    const info = this.mapInfo.find((m) => m.name === name);
    if (!info) throw notFound('find map', this.path, `no map '${name}'; it has: ${this.mapNames().join(', ')}`);
    const map = new BpfMap(native.dupFd(info.fd, `map ${name}`), info, info.pinPath);
    this.mapCache.set(name, map);
    return map;
  }

  programs(): BpfProgram[] {
    return this.programInfo.filter((p) => p.fd >= 0).map((p) => this.program(p.name));
  }

  /** The object's maps, without libbpf's internal .bss/.data/.rodata maps (map('x.bss') still finds those). */
  maps(): BpfMap[] {
    return this.mapInfo.filter((m) => !m.internal).map((m) => this.map(m.name));
  }

  programNames(): string[] {
    return this.programInfo.map((p) => p.name);
  }

  mapNames(): string[] {
    return this.mapInfo.map((m) => m.name);
  }

  /**
   * Releases the object and every program/map handle it handed out. Attachments made as
   * links keep their programs alive; pinned maps stay pinned.
   */
  close(): void {
    for (const p of this.programCache.values()) p.close();
    for (const m of this.mapCache.values()) m.close();
    this.programCache.clear();
    this.mapCache.clear();
    if (this.handle) native.closeObject(this.handle);
    this.handle = null;
  }

  get closed(): boolean {
    return this.handle === null;
  }

  private live(op: string): ObjectHandle {
    if (!this.handle) throw new BpfError({ errno: 9, code: 'EBADF', op, target: this.path, detail: 'the object is closed' });
    return this.handle;
  }
}
