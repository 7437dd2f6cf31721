// Disposes live testbeds (and what runs in them) when the process is interrupted, then exits with
// the conventional code. Handlers are installed only while something is registered, so the default
// behaviour returns afterwards.
//
// Order: last registered first, so a mode's agent stops (and removes its pins and temp files)
// before the testbed's namespaces go. While disposing, errors of the interrupted main flow (its
// pods vanish under it) are swallowed: an unhandled rejection would end the process before the
// clean-up does.

export interface Disposable {
  dispose(): Promise<void>;
}

const live: Disposable[] = [];
let installed = false;
let exiting = false;

function swallow(): void {
  /* the interrupted main flow failing while we dispose: expected, not reported */
}

async function onSignal(signal: NodeJS.Signals): Promise<void> {
  if (exiting) return;
  exiting = true;
  process.on('unhandledRejection', swallow);
  process.on('uncaughtException', swallow);
  process.stderr.write(`\n@shunt/testbed: ${signal}: removing ${live.length} testbed resource(s)\n`);
  for (const d of [...live].reverse()) {
    try {
      await d.dispose();
    } catch (e) {
      process.stderr.write(`@shunt/testbed: clean-up after ${signal}: ${(e as Error).message}\n`);
    }
  }
  process.exit(signal === 'SIGINT' ? 130 : 143);
}

const handlers: Record<'SIGINT' | 'SIGTERM', () => void> = {
  SIGINT: () => void onSignal('SIGINT'),
  SIGTERM: () => void onSignal('SIGTERM'),
};

export function registerLive(t: Disposable): void {
  live.push(t);
  if (!installed) {
    process.on('SIGINT', handlers.SIGINT);
    process.on('SIGTERM', handlers.SIGTERM);
    installed = true;
  }
}

export function unregisterLive(t: Disposable): void {
  const i = live.indexOf(t);
  if (i >= 0) live.splice(i, 1);
  if (live.length === 0 && installed && !exiting) {
    process.off('SIGINT', handlers.SIGINT);
    process.off('SIGTERM', handlers.SIGTERM);
    installed = false;
  }
}

/**
 * Runs `body` with `teardown` registered for interruption; `teardown` runs once, whether the body
 * ends, throws, or the process is interrupted meanwhile.
 */
export async function withTeardown<T>(teardown: () => Promise<void>, body: () => Promise<T>): Promise<T> {
  let done: Promise<void> | null = null;
  const once = (): Promise<void> => (done ??= teardown());
  const entry: Disposable = { dispose: once };
  registerLive(entry);
  try {
    return await body();
  } finally {
    try {
      await once();
    } finally {
      unregisterLive(entry);
    }
  }
}
