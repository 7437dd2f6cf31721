// Collects one table's chains, rules and jumps in authoring order; shared by the sidecar
// (render.ts) and ambient (render-ambient.ts) renderers.

import type { TableRules } from './plan';

export class TableBuilder {
  private readonly chains: string[] = [];
  private readonly rules = new Map<string, string[]>();
  private readonly jumps: string[] = [];

  add(chain: string, spec: string): this {
    if (!this.rules.has(chain)) {
      this.chains.push(chain);
      this.rules.set(chain, []);
    }
    this.rules.get(chain)!.push(`-A ${chain} ${spec}`);
    return this;
  }

  jump(builtin: 'PREROUTING' | 'OUTPUT', spec: string): this {
    this.jumps.push(`-A ${builtin} ${spec}`);
    return this;
  }

  build(): TableRules | undefined {
    if (this.chains.length === 0) return undefined;
    // A jump to a chain we did not fill would make iptables-restore fail; catch it here instead.
    for (const j of this.jumps) {
      const target = / -j (\S+)/.exec(j)?.[1];
      if (target && !this.rules.has(target)) throw new Error(`internal: jump to unknown chain ${target}`);
    }
    return { chains: [...this.chains], rules: this.chains.flatMap((c) => this.rules.get(c)!), jumps: [...this.jumps] };
  }
}

export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

