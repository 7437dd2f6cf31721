/**
 * BpfMap: element operations on one kernel map, keys and values as Buffers of the exact
 * sizes the map declares. Each BpfMap owns its own fd (a dup when it came from a
 * BpfObject), closed by close() or, as a safety net, when the wrapper is collected.
 */
import { BpfError, invalidArgument } from './errors';
import { type Codec } from './codec';
import { native, type FdHandle } from './native';
import * as fs from 'node:fs';

export type UpdateFlag = 'any' | 'noexist' | 'exist';
const UPDATE_FLAGS: Record<UpdateFlag, number> = { any: 0, noexist: 1, exist: 2 };

const PER_CPU_TYPES = new Set(['percpu_hash', 'percpu_array', 'lru_percpu_hash', 'percpu_cgroup_storage']);

export interface BpfMapDescription {
  name: string;
  type: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  /** BTF type names of key and value ('struct sock_key', '__u32'); empty when unknown. */
  btfKeyType?: string;
  btfValueType?: string;
}

export class BpfMap {
  readonly name: string;
  /** libbpf's map type name: 'hash', 'lru_hash', 'percpu_array', 'lpm_trie', 'sockhash', ... */
  readonly type: string;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  readonly btfKeyType: string;
  readonly btfValueType: string;
  private handle: FdHandle | null;
  private pinnedAt: string | undefined;

  /** @internal use BpfObject.map() or BpfMap.fromPin() */
  constructor(handle: FdHandle, d: BpfMapDescription, pinnedAt?: string) {
    this.handle = handle;
    this.name = d.name;
    this.type = d.type;
    this.keySize = d.keySize;
    this.valueSize = d.valueSize;
    this.maxEntries = d.maxEntries;
    this.flags = d.flags;
    this.btfKeyType = d.btfKeyType ?? '';
    this.btfValueType = d.btfValueType ?? '';
    this.pinnedAt = pinnedAt;
  }

  /** Adopts a map pinned in bpffs (sizes and type come from the kernel). */
  static fromPin(path: string): BpfMap {
    const handle = native.objGet(path);
    const fd = native.fdOf(handle);
    let info;
    try {
      info = native.mapInfo(fd, path);
    } catch (err) {
      native.closeFd(handle);
      if (err instanceof BpfError && err.code === 'EINVAL')
        throw invalidArgument('adopt map', path, 'the pin is not a map');
      throw err;
    }
    return new BpfMap(handle, info, path);
  }

  get fd(): number {
    const fd = this.handle ? native.fdOf(this.handle) : -1;
    if (fd < 0) throw new BpfError({ errno: 9, code: 'EBADF', op: 'use', target: this.target, detail: 'the map is closed' });
    return fd;
  }

  /** Kernel map id (stable across processes, shown by bpftool). */
  get id(): number {
    return native.mapInfo(this.fd, this.target).id;
  }

  get pinPath(): string | undefined {
    return this.pinnedAt;
  }

  get perCpu(): boolean {
    return PER_CPU_TYPES.has(this.type);
  }

  /** Bytes one value occupies per CPU in per-CPU lookups (the kernel rounds up to 8). */
  get perCpuStride(): number {
    return Math.ceil(this.valueSize / 8) * 8;
  }

  private get target(): string {
    return `map ${this.name}`;
  }

  private get valueBytes(): number {
    return this.perCpu ? this.perCpuStride * native.numPossibleCpus() : this.valueSize;
  }

  private checkKey(op: string, key: Buffer): void {
    if (!Buffer.isBuffer(key)) throw invalidArgument(op, this.target, 'key must be a Buffer');
    if (key.length !== this.keySize)
      throw invalidArgument(op, this.target, `key is ${key.length} bytes, the map's key is ${this.keySize} bytes`);
  }

  private checkValue(op: string, value: Buffer): void {
    if (!Buffer.isBuffer(value)) throw invalidArgument(op, this.target, 'value must be a Buffer');
    if (value.length !== this.valueSize)
      throw invalidArgument(op, this.target, `value is ${value.length} bytes, the map's value is ${this.valueSize} bytes`);
  }

  /**
   * The value for key, or null when absent. Per-CPU maps return all CPUs' values
   * concatenated (perCpuStride bytes each); use lookupPerCpu() to get them split.
   */
  lookup(key: Buffer): Buffer | null {
    this.checkKey('lookup', key);
    return native.mapLookup(this.fd, key, this.valueBytes, this.target);
  }

  /** Per-CPU maps: one valueSize Buffer per possible CPU. */
  lookupPerCpu(key: Buffer): Buffer[] | null {
    if (!this.perCpu) throw invalidArgument('lookupPerCpu', this.target, `map type ${this.type} is not per-CPU`);
    const raw = this.lookup(key);
    if (!raw) return null;
    const out: Buffer[] = [];
    for (let off = 0; off < raw.length; off += this.perCpuStride) out.push(raw.subarray(off, off + this.valueSize));
    return out;
  }

  /**
   * Sets key to value. For per-CPU maps, value is either one valueSize Buffer (written
   * to every CPU) or an array with one Buffer per possible CPU.
   */
  update(key: Buffer, value: Buffer | Buffer[], flags: UpdateFlag = 'any'): void {
    this.checkKey('update', key);
    const flagBits = UPDATE_FLAGS[flags];
    if (flagBits === undefined) throw invalidArgument('update', this.target, `unknown flag '${String(flags)}'`);
    native.mapUpdate(this.fd, key, this.encodeValue('update', value), flagBits, this.target);
  }

  private encodeValue(op: string, value: Buffer | Buffer[]): Buffer {
    if (!this.perCpu) {
      if (Array.isArray(value)) throw invalidArgument(op, this.target, 'per-CPU values given for a map that is not per-CPU');
      this.checkValue(op, value);
      return value;
    }
    const cpus = native.numPossibleCpus();
    const values = Array.isArray(value) ? value : new Array<Buffer>(cpus).fill(value);
    if (values.length !== cpus)
      throw invalidArgument(op, this.target, `got ${values.length} per-CPU values, the machine has ${cpus} possible CPUs`);
    const out = Buffer.alloc(this.perCpuStride * cpus);
    values.forEach((v, i) => {
      this.checkValue(op, v);
      v.copy(out, i * this.perCpuStride);
    });
    return out;
  }

  /**
   * Sockmap/sockhash: puts the socket behind socketFd at key (any key the map declares:
   * an index for a sockmap, any struct for a sockhash). TCP sockets must be listening or
   * established, UDP ones bound. The map holds its own reference, so the caller may close
   * socketFd afterwards; the entry goes away by itself when the socket is closed.
   */
  updateSocket(key: Buffer, socketFd: number, flags: UpdateFlag = 'any'): void {
    this.checkSocketMap('updateSocket');
    if (!Number.isInteger(socketFd) || socketFd < 0)
      throw invalidArgument('updateSocket', this.target, `socket fd must be a non-negative integer, got ${String(socketFd)}`);
    const value = Buffer.alloc(this.valueSize);
    if (this.valueSize === 8) value.writeBigUInt64LE(BigInt(socketFd));
    else value.writeUInt32LE(socketFd);
    try {
      this.update(key, value, flags);
    } catch (err) {
      if (err instanceof BpfError && (err.code === 'EOPNOTSUPP' || err.code === 'ENOTSOCK'))
        throw new BpfError({
          errno: err.errno,
          code: err.code,
          op: err.op,
          target: this.target,
          detail:
            err.code === 'ENOTSOCK'
              ? `fd ${socketFd} is not a socket`
              : `fd ${socketFd} is not a socket the map can hold (TCP must be listening or established, UDP bound)`,
        });
      throw err;
    }
  }

  /** Sockmap/sockhash: the socket cookie stored at key, or null (needs an 8-byte value). */
  socketCookie(key: Buffer): bigint | null {
    this.checkSocketMap('socketCookie');
    if (this.valueSize !== 8)
      throw invalidArgument('socketCookie', this.target, `the kernel returns cookies only for 8-byte values; this map's value is ${this.valueSize} bytes`);
    return this.lookup(key)?.readBigUInt64LE(0) ?? null;
  }

  private checkSocketMap(op: string): void {
    if (this.type !== 'sockmap' && this.type !== 'sockhash')
      throw invalidArgument(op, this.target, `map type ${this.type} holds no sockets; use a sockmap or sockhash`);
  }

  /** Removes key; false when it was not there. */
  delete(key: Buffer): boolean {
    this.checkKey('delete', key);
    return native.mapDelete(this.fd, key, this.target);
  }

  /**
   * All keys (array maps list every index). Bounded by maxEntries. Where the map type has batch
   * lookup, one syscall per chunk instead of one get_next_key per key (a 160,000-entry map is read
   * in milliseconds, not a quarter second); the keys are views into one buffer.
   */
  keys(): Buffer[] {
    if (BATCH_TYPES.has(this.type)) {
      try {
        const r = native.mapLookupBatch(this.fd, this.keySize, this.valueBytes, this.maxEntries, this.target);
        const out = new Array<Buffer>(r.count);
        for (let i = 0; i < r.count; i++) out[i] = r.keys.subarray(i * this.keySize, (i + 1) * this.keySize);
        return out;
      } catch (err) {
        if (!(err instanceof BpfError) || !['EINVAL', 'ENOTSUPP', 'EOPNOTSUPP'].includes(err.code)) throw err;
      }
    }
    return native.mapKeys(this.fd, this.keySize, this.maxEntries, this.target);
  }

  /**
   * All entries. Uses the kernel's batch lookup where the map type has it (hash, LRU,
   * arrays), one syscall per chunk; otherwise falls back to keys() + lookup().
   */
  entries(): Array<[Buffer, Buffer]> {
    const valueBytes = this.valueBytes;
    if (BATCH_TYPES.has(this.type)) {
      try {
        const r = native.mapLookupBatch(this.fd, this.keySize, valueBytes, this.maxEntries, this.target);
        const out: Array<[Buffer, Buffer]> = [];
        for (let i = 0; i < r.count; i++)
          out.push([
            r.keys.subarray(i * this.keySize, (i + 1) * this.keySize),
            r.values.subarray(i * valueBytes, (i + 1) * valueBytes),
          ]);
        return out;
      } catch (err) {
        if (!(err instanceof BpfError) || !['EINVAL', 'ENOTSUPP', 'EOPNOTSUPP'].includes(err.code)) throw err;
      }
    }
    const out: Array<[Buffer, Buffer]> = [];
    for (const k of this.keys()) {
      const v = native.mapLookup(this.fd, k, valueBytes, this.target);
      if (v) out.push([k, v]);
    }
    return out;
  }

  /**
   * How many entries the map holds (array maps: maxEntries), counted in the addon without handing
   * keys or values to JS: the cheap reading for metrics and capacity at any map size. Batched where
   * the map type has batch lookup, `chunk` entries per syscall (grown when a hash bucket is larger).
   * Bounded by maxEntries.
   */
  count(chunk = 256): number {
    if (!Number.isInteger(chunk) || chunk < 1) throw invalidArgument('count', this.target, `chunk must be a positive integer, got ${chunk}`);
    if (BATCH_TYPES.has(this.type)) {
      try {
        return native.mapCount(this.fd, this.keySize, this.valueBytes, this.maxEntries, chunk, this.target);
      } catch (err) {
        if (!(err instanceof BpfError) || !['EINVAL', 'ENOTSUPP', 'EOPNOTSUPP'].includes(err.code)) throw err;
      }
    }
    return native.mapCount(this.fd, this.keySize, this.valueBytes, this.maxEntries, 0, this.target);
  }

  /** Writes many entries in one syscall (kernel batch ops); returns how many were written. */
  updateBatch(entries: Array<[Buffer, Buffer]>, flags: UpdateFlag = 'any'): number {
    if (entries.length === 0) return 0;
    const valueBytes = this.valueBytes;
    const keys = Buffer.alloc(entries.length * this.keySize);
    const values = Buffer.alloc(entries.length * valueBytes);
    entries.forEach(([k, v], i) => {
      this.checkKey('updateBatch', k);
      this.encodeValue('updateBatch', v).copy(values, i * valueBytes);
      k.copy(keys, i * this.keySize);
    });
    return native.mapUpdateBatch(this.fd, keys, values, entries.length, UPDATE_FLAGS[flags], this.target);
  }

  /** Deletes many keys in one syscall; every key must exist (ENOENT otherwise). */
  deleteBatch(keys: Buffer[]): number {
    if (keys.length === 0) return 0;
    const buf = Buffer.alloc(keys.length * this.keySize);
    keys.forEach((k, i) => {
      this.checkKey('deleteBatch', k);
      k.copy(buf, i * this.keySize);
    });
    return native.mapDeleteBatch(this.fd, buf, keys.length, this.target);
  }

  /** Pins the map at path in bpffs (the directory must exist). */
  pin(path: string): void {
    native.objPin(this.fd, path, this.target);
    this.pinnedAt = path;
  }

  /** Removes the pin made by pin() or found by fromPin(); the map lives on while fds remain. */
  unpin(): void {
    if (!this.pinnedAt) throw invalidArgument('unpin', this.target, 'the map is not pinned by this handle');
    fs.rmSync(this.pinnedAt, { force: true });
    this.pinnedAt = undefined;
  }

  /** A view that encodes/decodes with codecs whose sizes must match the map's. */
  typed<K, V>(keyCodec: Codec<K>, valueCodec: Codec<V>): TypedMap<K, V> {
    if (keyCodec.size !== this.keySize)
      throw invalidArgument(
        'typed',
        this.target,
        `key codec is ${keyCodec.size} bytes, the map's key${this.btfKeyType ? ` (${this.btfKeyType})` : ''} is ${this.keySize} bytes`,
      );
    if (valueCodec.size !== this.valueSize)
      throw invalidArgument(
        'typed',
        this.target,
        `value codec is ${valueCodec.size} bytes, the map's value${this.btfValueType ? ` (${this.btfValueType})` : ''} is ${this.valueSize} bytes`,
      );
    return new TypedMap(this, keyCodec, valueCodec);
  }

  close(): void {
    if (this.handle) native.closeFd(this.handle);
    this.handle = null;
  }
}

const BATCH_TYPES = new Set(['hash', 'lru_hash', 'percpu_hash', 'lru_percpu_hash', 'array', 'percpu_array']);

export class TypedMap<K, V> {
  constructor(
    readonly map: BpfMap,
    readonly keyCodec: Codec<K>,
    readonly valueCodec: Codec<V>,
  ) {}

  /** Per-CPU maps have one value per CPU: use lookupPerCpu() there. */
  lookup(key: K): V | null {
    if (this.map.perCpu) throw invalidArgument('lookup', `map ${this.map.name}`, 'per-CPU map: use lookupPerCpu()');
    const raw = this.map.lookup(this.keyCodec.encode(key));
    return raw ? this.valueCodec.decode(raw) : null;
  }

  lookupPerCpu(key: K): V[] | null {
    const raw = this.map.lookupPerCpu(this.keyCodec.encode(key));
    return raw ? raw.map((b) => this.valueCodec.decode(b)) : null;
  }

  update(key: K, value: V, flags: UpdateFlag = 'any'): void {
    this.map.update(this.keyCodec.encode(key), this.valueCodec.encode(value), flags);
  }

  delete(key: K): boolean {
    return this.map.delete(this.keyCodec.encode(key));
  }

  keys(): K[] {
    return this.map.keys().map((k) => this.keyCodec.decode(k));
  }

  entries(): Array<[K, V]> {
    if (this.map.perCpu) throw invalidArgument('entries', `map ${this.map.name}`, 'per-CPU map: use lookupPerCpu()');
    return this.map.entries().map(([k, v]) => [this.keyCodec.decode(k), this.valueCodec.decode(v)]);
  }
}
