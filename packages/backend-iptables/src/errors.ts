import type { PodRef } from '@shunt/core';

export function podName(pod: PodRef): string {
  return `${pod.namespace}/${pod.name}`;
}

/** A pod whose interpreted settings cannot be turned into rules (names the pod, field and value). */
export class PodRulesError extends Error {
  override readonly name = 'PodRulesError';
  constructor(
    readonly pod: PodRef,
    readonly field: string,
    readonly value: unknown,
    reason: string,
  ) {
    super(`pod ${podName(pod)}: ${field}=${JSON.stringify(value)}: ${reason}`);
  }
}

/** iptables-restore (or ip6tables-restore) refused a transaction; the previous rules are still in place. */
export class RestoreError extends Error {
  override readonly name = 'RestoreError';
  constructor(
    readonly pod: PodRef,
    readonly family: 4 | 6,
    readonly table: string,
    readonly command: readonly string[],
    /** What the restore binary printed (its stderr). */
    readonly output: string,
    /** The transaction that was refused, as fed to stdin. */
    readonly input: string,
    /** Set when undoing earlier tables of the same enroll failed too. */
    readonly rollbackError?: string,
  ) {
    super(
      `pod ${podName(pod)}: ${family === 4 ? 'iptables' : 'ip6tables'}-restore of table ${table} failed` +
        ` (\`${command.join(' ')}\`): ${output.trim() || 'no output'}` +
        (rollbackError ? `; rolling back earlier tables also failed: ${rollbackError}` : '; previous rules kept') +
        `\n--- input ---\n${numbered(input)}`,
    );
  }
}

/** Line numbers make iptables-restore's "line N failed" readable. */
function numbered(text: string): string {
  return text
    .split('\n')
    .filter((l, i, a) => !(i === a.length - 1 && l === ''))
    .map((l, i) => `${String(i + 1).padStart(3)}  ${l}`)
    .join('\n');
}

/** A port field of the pod, checked before it reaches a rule (so the error names the field, not a restore line). */
export function checkPort(pod: PodRef, field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) {
    throw new PodRulesError(pod, field, v, 'not a port (an integer 1..65535)');
  }
  return v;
}

