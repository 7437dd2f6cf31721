// One shared, frozen instance per distinct value. Thousands of pods on a node mostly carry the
// same proxy settings, port lists and traffic selection (the profile's defaults): each pod record
// then points at one copy instead of holding its own (at 10,000 pods this is megabytes of heap).
// Shared values are deep-frozen, so a consumer that tried to change one in place would throw
// instead of silently changing every pod that shares it.

/** Recursively freezes plain objects and arrays (what pod records are made of). */
export function deepFreeze<T>(v: T): T {
  if (typeof v !== 'object' || v === null || Object.isFrozen(v)) return v;
  for (const x of Object.values(v as object)) deepFreeze(x);
  return Object.freeze(v);
}

export class InternPool {
  private readonly values = new Map<string, unknown>();

  /** At most `maxValues` distinct values are kept; past that the pool starts over (values stay valid). */
  constructor(private readonly maxValues = 4096) {}

  /** The pool's instance equal to `v` (by JSON form), deep-frozen; `v` itself the first time. */
  value<T>(v: T): T {
    if (typeof v !== 'object' || v === null) return v;
    const key = JSON.stringify(v);
    const have = this.values.get(key);
    if (have !== undefined) return have as T;
    if (this.values.size >= this.maxValues) this.values.clear();
    this.values.set(key, deepFreeze(v));
    return v;
  }

  /** One instance per distinct string (strings decoded or concatenated per pod are separate copies otherwise). */
  string(s: string): string {
    const key = `s:${s}`;
    const have = this.values.get(key);
    if (have !== undefined) return have as string;
    if (this.values.size >= this.maxValues) this.values.clear();
    this.values.set(key, s);
    return s;
  }

  get size(): number {
    return this.values.size;
  }
}
