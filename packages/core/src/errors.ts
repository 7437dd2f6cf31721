// Typed errors: callers branch on `code`, people read `message`.

export type ShuntErrorCode = 'POD_REJECTED' | 'CONFIG' | 'BACKEND_UNSUPPORTED' | 'PROBE' | 'SOURCE' | 'TIMEOUT';

export class ShuntError extends Error {
  readonly code: ShuntErrorCode;
  constructor(code: ShuntErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A pod whose mesh settings cannot be honoured; names the pod, the field or annotation, and the bad value. */
export class PodRejectedError extends ShuntError {
  readonly pod: string;
  readonly field: string;
  readonly value: string;
  readonly detail: string;
  constructor(pod: string, field: string, value: string, detail: string) {
    super('POD_REJECTED', `pod ${pod}: ${field}=${JSON.stringify(value)} rejected: ${detail}`);
    this.pod = pod;
    this.field = field;
    this.value = value;
    this.detail = detail;
  }
}

/** Invalid configuration; `source` says where the bad value came from (flag, env, file). */
export class ConfigError extends ShuntError {
  readonly key: string;
  readonly source: string;
  constructor(key: string, source: string, detail: string) {
    super('CONFIG', `config ${key} (from ${source}): ${detail}`);
    this.key = key;
    this.source = source;
  }
}

/** A backend that the node cannot run was forced, or none could be chosen. */
export class BackendUnsupportedError extends ShuntError {
  readonly rejected: { name: string; reasons: string[] }[];
  constructor(message: string, rejected: { name: string; reasons: string[] }[]) {
    super('BACKEND_UNSUPPORTED', message);
    this.rejected = rejected;
  }
}

export class TimeoutError extends ShuntError {
  constructor(what: string, ms: number) {
    super('TIMEOUT', `${what} timed out after ${ms} ms`);
  }
}

/** Best-effort text of anything thrown, including errors from another realm (instanceof fails there). */
export function errorMessage(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'message' in err && typeof (err as { message: unknown }).message === 'string') {
    return (err as { message: string }).message;
  }
  return String(err);
}
