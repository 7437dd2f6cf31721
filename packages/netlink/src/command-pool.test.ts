import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
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

test('a new pool removes the job directories of dead processes (a SIGKILLed agent leaves one), not of live ones', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'shunt-cp-root-'));
  const live = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    const deadPid = spawnSync('true').pid;
    const dead = path.join(root, `shunt-cmd-${deadPid}-aaaaaa`);
    const alive = path.join(root, `shunt-cmd-${live.pid}-bbbbbb`);
    const foreign = path.join(root, 'shunt-cmd-cccccc');
    for (const d of [dead, alive, foreign]) fs.mkdirSync(d);
    const own = new CommandPool({ size: 1, tmpRoot: root });
    expect(await own.run(['echo', 'ok'])).toBe('ok\n');
    expect(fs.existsSync(dead)).toBe(false);
    expect(fs.existsSync(alive)).toBe(true);
    expect(fs.existsSync(foreign)).toBe(true);
    const mine = fs.readdirSync(root).filter((n) => n.startsWith(`shunt-cmd-${process.pid}-`));
    expect(mine).toHaveLength(1);
    own.close();
    expect(fs.readdirSync(root).sort()).toEqual([path.basename(alive), path.basename(foreign)].sort());
  } finally {
    live.kill('SIGKILL');
    fs.rmSync(root, { recursive: true, force: true });
  }
});
