import { NetlinkError } from './errors';
import { parseAddresses, parseLink, parseRoute, parseRule } from './parse';
import { runCommand, runIp, runIpJson } from './run';
import type { Address, Family, Link, Route, RouteSpec, Rule, RuleSpec } from './types';

type Json = Record<string, unknown>;

const IFNAME_RE = /^[A-Za-z0-9_.@-]{1,15}$/;
const SYSCTL_KEY_RE = /^[A-Za-z0-9_]+([./][A-Za-z0-9_-]+)+$/;

function checkIfname(name: string, what = 'interface name'): string {
  if (!IFNAME_RE.test(name)) {
    throw new Error(`invalid ${what} ${JSON.stringify(name)}: 1-15 characters of [A-Za-z0-9_.@-]`);
  }
  return name;
}

function familyFlag(family: Family | undefined): string[] {
  return family === 6 ? ['-6'] : family === 4 ? ['-4'] : [];
}

function familyOf(addr: string): Family {
  return addr.includes(':') ? 6 : 4;
}

/**
 * Links, addresses, routes, rules and sysctls of one network namespace.
 * Every operation is one `ip` (or `sysctl`) process run without a shell; a failing one
 * rejects with a NetlinkError carrying the command and its stderr.
 */
export class Netlink {
  private constructor(
    /** Path of the netns (e.g. /run/netns/x), or undefined for the caller's own netns. */
    readonly netns: string | undefined,
  ) {}

  /** The netns the calling process runs in. */
  static current(): Netlink {
    return new Netlink(undefined);
  }

  /** A netns given by path (/run/netns/<name>, /proc/<pid>/ns/net, …). */
  static at(netnsPath: string): Netlink {
    if (!netnsPath.startsWith('/')) throw new Error(`netns path must be absolute, got ${JSON.stringify(netnsPath)}`);
    return new Netlink(netnsPath);
  }

  private ip(args: string[]): Promise<string> {
    return runIp(args, this.netns ? { netns: this.netns } : {});
  }

  private ipJson<T = Json>(args: string[]): Promise<T[]> {
    return runIpJson<T>(args, this.netns ? { netns: this.netns } : {});
  }

  // ---- links -------------------------------------------------------------------------------

  /** All links; `stats` adds 64-bit counters, `details` adds the link kind. */
  async links(opts: { stats?: boolean; details?: boolean } = {}): Promise<Link[]> {
    const args = [...(opts.stats ? ['-s'] : []), ...(opts.details ? ['-d'] : []), 'link', 'show'];
    return (await this.ipJson(args)).map(parseLink);
  }

  /** One link by name, or undefined when it does not exist. */
  async findLink(name: string, opts: { stats?: boolean; details?: boolean } = {}): Promise<Link | undefined> {
    checkIfname(name);
    const args = [...(opts.stats ? ['-s'] : []), ...(opts.details ? ['-d'] : []), 'link', 'show', 'dev', name];
    try {
      const [l] = await this.ipJson(args);
      return l ? parseLink(l) : undefined;
    } catch (e) {
      if (e instanceof NetlinkError && e.notFound) return undefined;
      throw e;
    }
  }

  /** One link by name; rejects when it does not exist. */
  async link(name: string, opts: { stats?: boolean; details?: boolean } = {}): Promise<Link> {
    const l = await this.findLink(name, opts);
    if (!l) throw new Error(`link ${name} not found in netns ${this.netns ?? '(current)'}`);
    return l;
  }

  async addBridge(name: string): Promise<void> {
    await this.ip(['link', 'add', checkIfname(name), 'type', 'bridge']);
  }

  /**
   * Creates a veth pair here; with `peerNetns` the peer is created directly in that netns
   * (so it never exists, even briefly, in this one).
   */
  async addVeth(name: string, peer: string, opts: { peerNetns?: string; mtu?: number } = {}): Promise<void> {
    const args = ['link', 'add', checkIfname(name)];
    if (opts.mtu) args.push('mtu', String(opts.mtu));
    args.push('type', 'veth', 'peer', 'name', checkIfname(peer, 'veth peer name'));
    if (opts.peerNetns) args.push('netns', opts.peerNetns);
    await this.ip(args);
  }

  async setUp(name: string): Promise<void> {
    await this.ip(['link', 'set', 'dev', checkIfname(name), 'up']);
  }

  async setDown(name: string): Promise<void> {
    await this.ip(['link', 'set', 'dev', checkIfname(name), 'down']);
  }

  async setMaster(name: string, master: string): Promise<void> {
    await this.ip(['link', 'set', 'dev', checkIfname(name), 'master', checkIfname(master, 'master name')]);
  }

  async setMtu(name: string, mtu: number): Promise<void> {
    await this.ip(['link', 'set', 'dev', checkIfname(name), 'mtu', String(mtu)]);
  }

  /** Moves a link into another netns (by path), optionally renaming it on the way. */
  async moveToNetns(name: string, netnsPath: string, opts: { newName?: string } = {}): Promise<void> {
    const args = ['link', 'set', 'dev', checkIfname(name), 'netns', netnsPath];
    if (opts.newName) args.push('name', checkIfname(opts.newName));
    await this.ip(args);
  }

  /** Deletes a link (a veth takes its peer with it); `ignoreMissing` makes it idempotent. */
  async deleteLink(name: string, opts: { ignoreMissing?: boolean } = {}): Promise<void> {
    try {
      await this.ip(['link', 'del', 'dev', checkIfname(name)]);
    } catch (e) {
      if (opts.ignoreMissing && e instanceof NetlinkError && e.notFound) return;
      throw e;
    }
  }

  // ---- addresses ---------------------------------------------------------------------------

  async addresses(opts: { family?: Family; dev?: string } = {}): Promise<Address[]> {
    const args = [...familyFlag(opts.family), 'addr', 'show'];
    if (opts.dev) args.push('dev', checkIfname(opts.dev));
    return parseAddresses(await this.ipJson(args));
  }

  /** Adds `address/prefix` to dev. IPv6 addresses skip DAD by default so they are usable at once. */
  async addAddress(dev: string, cidr: string, opts: { nodad?: boolean } = {}): Promise<void> {
    if (!/^[0-9a-fA-F.:]+\/\d{1,3}$/.test(cidr)) throw new Error(`invalid address ${JSON.stringify(cidr)}: want address/prefix`);
    const fam = familyOf(cidr);
    const args = [...familyFlag(fam), 'addr', 'add', cidr, 'dev', checkIfname(dev)];
    if (fam === 6 && opts.nodad !== false) args.push('nodad');
    await this.ip(args);
  }

  async deleteAddress(dev: string, cidr: string): Promise<void> {
    await this.ip([...familyFlag(familyOf(cidr)), 'addr', 'del', cidr, 'dev', checkIfname(dev)]);
  }

  // ---- routes ------------------------------------------------------------------------------

  /** Routes of one family in one table (`main` by default, `all` for every table). */
  async routes(opts: { family?: Family; table?: number | string } = {}): Promise<Route[]> {
    const family = opts.family ?? 4;
    const table = String(opts.table ?? 'main');
    const rows = await this.ipJson([...familyFlag(family), 'route', 'show', 'table', table]);
    // ip leaves out the table of each row when one table was asked for.
    return rows.map((r) => parseRoute(table === 'all' || r.table !== undefined ? r : { ...r, table }, family));
  }

  private routeArgs(spec: RouteSpec): string[] {
    const family = spec.family ?? (spec.dst === 'default' ? (spec.via ? familyOf(spec.via) : 4) : familyOf(spec.dst));
    const args = [...familyFlag(family), 'route'];
    const tail: string[] = [];
    if (spec.type && spec.type !== 'unicast') tail.push(spec.type);
    tail.push(spec.dst);
    if (spec.via) tail.push('via', spec.via);
    if (spec.dev) tail.push('dev', checkIfname(spec.dev));
    if (spec.src) tail.push('src', spec.src);
    if (spec.table !== undefined) tail.push('table', String(spec.table));
    if (spec.scope) tail.push('scope', spec.scope);
    if (spec.metric !== undefined) tail.push('metric', String(spec.metric));
    if (spec.onlink) tail.push('onlink');
    return [...args, '%OP%', ...tail];
  }

  private withOp(args: string[], op: string): string[] {
    return args.map((a) => (a === '%OP%' ? op : a));
  }

  async addRoute(spec: RouteSpec): Promise<void> {
    await this.ip(this.withOp(this.routeArgs(spec), 'add'));
  }

  /** Adds or overwrites a route (idempotent). */
  async replaceRoute(spec: RouteSpec): Promise<void> {
    await this.ip(this.withOp(this.routeArgs(spec), 'replace'));
  }

  async deleteRoute(spec: RouteSpec, opts: { ignoreMissing?: boolean } = {}): Promise<void> {
    try {
      await this.ip(this.withOp(this.routeArgs(spec), 'del'));
    } catch (e) {
      if (opts.ignoreMissing && e instanceof NetlinkError && (e.notFound || /No such process/.test(e.stderr))) return;
      throw e;
    }
  }

  // ---- policy rules ------------------------------------------------------------------------

  async rules(opts: { family?: Family } = {}): Promise<Rule[]> {
    const family = opts.family ?? 4;
    return (await this.ipJson([...familyFlag(family), 'rule', 'show'])).map((r) => parseRule(r, family));
  }

  private ruleArgs(spec: RuleSpec, op: 'add' | 'del'): string[] {
    const args = [...familyFlag(spec.family ?? 4), 'rule', op];
    if (spec.priority !== undefined) args.push('priority', String(spec.priority));
    if (spec.fwmark !== undefined) {
      args.push('fwmark', spec.fwmask !== undefined ? `0x${spec.fwmark.toString(16)}/0x${spec.fwmask.toString(16)}` : `0x${spec.fwmark.toString(16)}`);
    }
    if (spec.src) args.push('from', spec.src);
    if (spec.dst) args.push('to', spec.dst);
    if (spec.iif) args.push('iif', checkIfname(spec.iif));
    args.push('lookup', String(spec.table));
    return args;
  }

  /** Adds a policy rule, e.g. `{fwmark: 0x1, fwmask: 0x1, table: 133, priority: 32000}` for TPROXY. */
  async addRule(spec: RuleSpec): Promise<void> {
    await this.ip(this.ruleArgs(spec, 'add'));
  }

  async deleteRule(spec: RuleSpec, opts: { ignoreMissing?: boolean } = {}): Promise<void> {
    try {
      await this.ip(this.ruleArgs(spec, 'del'));
    } catch (e) {
      if (opts.ignoreMissing && e instanceof NetlinkError && e.notFound) return;
      throw e;
    }
  }

  /** Whether a rule with the same selector and table already exists (ip rule add is not idempotent). */
  async hasRule(spec: RuleSpec): Promise<boolean> {
    const rules = await this.rules(spec.family !== undefined ? { family: spec.family } : {});
    return rules.some(
      (r) =>
        r.table === String(spec.table) &&
        (spec.priority === undefined || r.priority === spec.priority) &&
        (spec.fwmark === undefined || r.fwmark === spec.fwmark) &&
        (spec.fwmask === undefined || r.fwmask === spec.fwmask),
    );
  }

  // ---- sysctls -----------------------------------------------------------------------------

  /** Writes a sysctl as seen from this netns (net.* keys are per netns). */
  async setSysctl(key: string, value: string | number): Promise<void> {
    if (!SYSCTL_KEY_RE.test(key)) throw new Error(`invalid sysctl key ${JSON.stringify(key)}`);
    const v = String(value);
    if (/[\n=]/.test(v)) throw new Error(`invalid sysctl value ${JSON.stringify(v)} for ${key}`);
    await runCommand(['sysctl', '-q', '-w', `${key}=${v}`], this.netns ? { netns: this.netns } : {});
  }

  async getSysctl(key: string): Promise<string> {
    if (!SYSCTL_KEY_RE.test(key)) throw new Error(`invalid sysctl key ${JSON.stringify(key)}`);
    return (await runCommand(['sysctl', '-n', key], this.netns ? { netns: this.netns } : {})).trim();
  }
}
