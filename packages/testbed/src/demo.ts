#!/usr/bin/env node
// `npm run demo`: the README's first command. The agent's `shunt demo` calls runDemo with backend modes.
import { runDemo } from './run-demo';

void runDemo().catch((e: unknown) => {
  console.error(`demo failed: ${(e as Error).message}`);
  process.exitCode = 1;
});
