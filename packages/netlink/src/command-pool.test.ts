import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { CommandPool, shellQuote } from './command-pool';
import { NetlinkError } from './errors';

const pool = new CommandPool({ size: 2 });
const ns = `shuntcp${randomBytes(3).toString('hex')}`;
beforeAll(() => execFileSync('ip', ['netns', 'add', ns]));
afterAll(() => {
  pool.close();
  execFileSync('ip', ['netns', 'delete', ns]);
});

test('runs argv without a shell: quoting, stdin, stdout', async () => {
  expect(await pool.run(['printf', '%s|', "it's", '$HOME', '`x`', 'a b'])).toBe("it's|$HOME|`x`|a b|");
  expect(await pool.run(['cat'], { input: 'line 1\nline 2\n' })).toBe('line 1\nline 2\n');
  expect(shellQuote("a'b")).toBe(`'a'\\''b'`);
});

test('a failing command rejects with its exit code and stderr; the helper keeps serving', async () => {
  const err = await pool.run(['sh', '-c', 'echo oops >&2; exit 3']).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(NetlinkError);
  expect(err).toMatchObject({ exitCode: 3, stderr: 'oops\n' });
  expect(await pool.run(['echo', 'still here'])).toBe('still here\n');
});

test('many jobs at once, each answer to its own caller', async () => {
  const outs = await Promise.all(Array.from({ length: 40 }, (_, i) => pool.run(['echo', String(i)])));
  expect(outs).toEqual(Array.from({ length: 40 }, (_, i) => `${i}\n`));
});

test('enters a netns; a command that overruns its timeout is killed and reported', async () => {
  expect(await pool.run(['readlink', '/proc/self/ns/net'], { netns: `/var/run/netns/${ns}` })).not.toBe(
    execFileSync('readlink', ['/proc/self/ns/net'], { encoding: 'utf8' }),
  );
  const err = await pool.run(['sleep', '30'], { timeoutMs: 200 }).catch((e: unknown) => e);
  expect((err as Error).message).toMatch(/command timed out: `sleep 30`/);
  expect(await pool.run(['echo', 'new helper'])).toBe('new helper\n');
});
