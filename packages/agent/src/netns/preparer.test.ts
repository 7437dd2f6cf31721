// The netns preparer's bookkeeping against a recording backend and a real directory watched with
// inotify (files stand in for the netns bind mounts; the kernel side is backend-tc's e2e and
// e2e/agent-ambient.test.ts): what it prepares, retries, releases, counts, and never touches.
import { mkdtempSync, rmSync, writeFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import type { Logger } from '@shunt/core';
import { NetnsPreparer, type PreparingBackend } from './preparer';

const log: Logger & { lines: Array<{ msg: string; o: object }> } = {
  lines: [],
  debug() {},
  info(o: object, msg?: string) {
    this.lines.push({ msg: msg ?? '', o });
  },
  warn(o: object, msg?: string) {
    this.lines.push({ msg: msg ?? '', o });
  },
  error(o: object, msg?: string) {
    this.lines.push({ msg: msg ?? '', o });
  },
};

class FakeBackend implements PreparingBackend {
  readonly name = 'tc';
  calls: string[] = [];
  prepared = new Map<string, string>(); // cookie -> path
  enrolled = new Set<string>();
  /** Paths without eth0 (prepare answers no-interface) until removed from here. */
  noIface = new Set<string>();
  private cookies = new Map<string, string>();
  /** A distinct cookie per path, as the kernel gives each netns its own. */
  cookieOf = (p: string): string => {
    if (!this.cookies.has(p)) this.cookies.set(p, String(1000 + this.cookies.size));
    return this.cookies.get(p)!;
  };
  async prepare(p: string): Promise<{ cookie: string; state: 'prepared' | 'adopted' | 'enrolled' | 'no-interface' | 'skipped' }> {
    this.calls.push(`prepare ${path.basename(p)}`);
    const cookie = this.cookieOf(p);
    if (this.enrolled.has(cookie)) return { cookie, state: 'enrolled' };
    if (this.noIface.has(p)) return { cookie, state: 'no-interface' };
    const had = this.prepared.has(cookie);
    this.prepared.set(cookie, p);
    return { cookie, state: had ? 'adopted' : 'prepared' };
  }
  async release(n: string | bigint): Promise<'released' | 'enrolled' | 'unknown'> {
    const cookie = n.toString();
    this.calls.push(`release ${cookie}`);
    if (this.enrolled.has(cookie)) return 'enrolled';
    return this.prepared.delete(cookie) ? 'released' : 'unknown';
  }
  preparedNetns() {
    // '' for links adopted from pins: a restarted backend does not know their netns path.
    return [...this.prepared].map(([cookie, netnsPath]) => ({ cookie, ...(netnsPath ? { netnsPath } : {}), since: 0, adopted: !netnsPath }));
  }
  /** What an enroll of the pod in that netns does to the backend's books. */
  enroll(p: string): void {
    const c = this.cookieOf(p);
    this.prepared.delete(c);
    this.enrolled.add(c);
  }
}

// Generous bounds: the machine running these may be loaded (timings here are bookkeeping, not claims).
jest.setTimeout(30_000);

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('NetnsPreparer', () => {
  let dir: string;
  let backend: FakeBackend;
  let registry: Registry;
  let prep: NetnsPreparer | null = null;
  const add = (name: string): string => {
    const p = path.join(dir, name);
    writeFileSync(p, '');
    return p;
  };
  const counted = async (): Promise<Record<string, number>> => {
    const m = (await registry.getMetricsAsJSON()).find((x) => x.name === 'shunt_netns_prepare_total');
    return Object.fromEntries((m?.values ?? []).map((v) => [String(v.labels['result']), v.value]));
  };

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'shunt-prep-'));
    backend = new FakeBackend();
    registry = new Registry();
    log.lines = [];
  });
  afterEach(async () => {
    await prep?.stop();
    prep = null;
    rmSync(dir, { recursive: true, force: true });
  });

  const start = async (o: { graceMs?: number; maxPrepared?: number; namePrefix?: string; sweepMs?: number; ready?: (p: string) => Promise<boolean> } = {}): Promise<NetnsPreparer> => {
    prep = new NetnsPreparer({ backend, log, registry, runDirs: [dir], sweepMs: o.sweepMs ?? 50, ...(o.ready ? { ready: o.ready } : {}), graceMs: o.graceMs ?? 60_000, ...(o.maxPrepared ? { maxPrepared: o.maxPrepared } : {}), ...(o.namePrefix ? { namePrefix: o.namePrefix } : {}) });
    await prep.start();
    return prep;
  };

  test('netns present at start are left alone; a new one is prepared at once (inotify), claimed by its enroll', async () => {
    add('old');
    const pr = await start({ sweepMs: 60_000 }); // no sweep during the test: the inotify event alone
    const p = add('new1');
    await until('new1 prepared', () => backend.prepared.size === 1);
    expect(pr.preparedPaths()).toEqual([p]);
    expect(backend.calls).toEqual(['prepare new1']);
    backend.enroll(p);
    await (pr as unknown as { sweep(): Promise<void> }).sweep(); // the periodic sweep notices the claim
    await until('claimed counted', () => log.lines.some((l) => l.msg.startsWith('prepared netns claimed')));
    expect(await counted()).toEqual({ prepared: 1, claimed: 1 });
    expect(backend.calls).toEqual(['prepare new1']); // never released: the pod owns it
  });

  test('unclaimed within the grace time: released (as is one whose run-dir entry went away first)', async () => {
    await start({ graceMs: 3000 });
    add('idle');
    const gone = add('gone');
    await until('both prepared', () => backend.prepared.size === 2);
    unlinkSync(gone);
    await until('gone released', () => backend.calls.includes(`release ${backend.cookieOf(gone)}`));
    expect(backend.prepared.size).toBe(1);
    await until('idle released', () => backend.prepared.size === 0);
    expect(await counted()).toEqual({ prepared: 2, released: 2 });
    expect(log.lines.filter((l) => l.msg.startsWith('prepared netns released')).map((l) => (l.o as { reason: string }).reason)).toEqual(['netns gone', 'no ambient pod claimed it within 3000 ms']);
  });

  test('no eth0 yet: retried with backoff until it has one; given up after the grace time', async () => {
    await start({ graceMs: 2000 });
    const late = path.join(dir, 'late');
    const never = path.join(dir, 'never');
    backend.noIface.add(late);
    backend.noIface.add(never);
    add('late');
    add('never');
    await until('a few retries', () => backend.calls.filter((c) => c === 'prepare late').length >= 3);
    backend.noIface.delete(late); // CNI ADD done
    await until('late prepared', () => backend.prepared.size === 1);
    await until('never given up', () => log.lines.some((l) => l.msg.startsWith('netns prepare: gave up')));
    const n = backend.calls.filter((c) => c === 'prepare never').length;
    await new Promise((r) => setTimeout(r, 300));
    expect(backend.calls.filter((c) => c === 'prepare never').length).toBe(n); // bounded: no more tries
    expect((await counted())['gave_up']).toBe(1);
  });

  test('not configured by the CNI yet (no pod address): nothing attached until it is', async () => {
    let addressed = false;
    let asked = 0;
    await start({ ready: async () => (asked++, addressed) });
    add('cni');
    await until('asked a few times', () => asked >= 3);
    expect(backend.calls).toEqual([]);
    addressed = true;
    await until('prepared', () => backend.prepared.size === 1);
    expect(backend.calls).toEqual(['prepare cni']);
  });

  test('a cap on prepared-but-unclaimed netns: beyond it, new netns are not prepared (they enroll cold)', async () => {
    await start({ maxPrepared: 2 });
    for (const n of ['n1', 'n2', 'n3']) add(n);
    await until('cap reached', () => log.lines.some((l) => l.msg.includes('cap of prepared-but-unclaimed')));
    expect(backend.prepared.size).toBe(2);
    expect(await counted()).toEqual({ prepared: 2, skipped_cap: 1 });
  });

  test("an earlier agent's prepared links are adopted and released after the grace time unless claimed", async () => {
    backend.prepared.set('111', '');
    backend.prepared.set('222', '');
    await start({ graceMs: 200 });
    // 222's pod is enrolled right after the restart (on the adopted links).
    backend.enrolled.add('222');
    backend.prepared.delete('222');
    await until('111 released', () => backend.prepared.size === 0);
    expect(backend.calls).toContain('release 111');
    expect(backend.calls).not.toContain('release 222');
  });
});
