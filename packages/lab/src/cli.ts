#!/usr/bin/env node
// Entry point of the `shunt-lab` binary (package.json "bin").
import { buildLabProgram } from './program';

buildLabProgram()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    process.stderr.write(`shunt-lab: ${(err as Error)?.message ?? String(err)}\n`);
    process.exitCode = 1;
  });
