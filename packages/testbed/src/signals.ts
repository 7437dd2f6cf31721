// Disposes live testbeds when the process is interrupted, then exits with the conventional code.
// Handlers are installed only while at least one testbed is alive, so the default behaviour returns
// afterwards.

interface Disposable {
  dispose(): Promise<void>;
}

const live = new Set<Disposable>();
let installed = false;

async function onSignal(signal: NodeJS.Signals): Promise<void> {
  process.stderr.write(`\n@shunt/testbed: ${signal}: removing ${live.size} testbed(s)\n`);
  const all = [...live];
  await Promise.allSettled(all.map((t) => t.dispose()));
  process.exit(signal === 'SIGINT' ? 130 : 143);
}

const handlers: Record<'SIGINT' | 'SIGTERM', () => void> = {
  SIGINT: () => void onSignal('SIGINT'),
  SIGTERM: () => void onSignal('SIGTERM'),
};

export function registerLive(t: Disposable): void {
  live.add(t);
  if (!installed) {
    process.on('SIGINT', handlers.SIGINT);
    process.on('SIGTERM', handlers.SIGTERM);
    installed = true;
  }
}

export function unregisterLive(t: Disposable): void {
  live.delete(t);
  if (live.size === 0 && installed) {
    process.off('SIGINT', handlers.SIGINT);
    process.off('SIGTERM', handlers.SIGTERM);
    installed = false;
  }
}
