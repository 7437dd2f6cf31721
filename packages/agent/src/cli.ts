#!/usr/bin/env node
// Entry point of the `shunt` binary (package.json "bin").
import { buildProgram } from './program';

buildProgram()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    process.stderr.write(`shunt: ${(err as Error)?.message ?? String(err)}\n`);
    process.exitCode = 1;
  });
