// The lab command line: help for both commands, flags validated before anything runs.
import { buildLabProgram } from './program';

function capture() {
  let buf = '';
  return { out: (t: string) => void (buf += t), err: (t: string) => void (buf += t), text: () => buf };
}

it.each(['demo', 'bench'])('`shunt-lab %s --help` describes the command', (cmd) => {
  const io = capture();
  const program = buildLabProgram(io);
  program.exitOverride();
  for (const c of program.commands) c.exitOverride();
  expect(() => program.parse([cmd, '--help'], { from: 'user' })).toThrow(/help/i);
  expect(io.text()).toContain(`Usage: shunt-lab ${cmd}`);
});

it('rejects a bad --rounds before running anything', () => {
  const io = capture();
  const program = buildLabProgram(io);
  program.exitOverride();
  for (const c of program.commands) c.exitOverride();
  expect(() => program.parse(['bench', '--rounds', '0'], { from: 'user' })).toThrow(/--rounds must be a positive integer, got "0"/);
});
