// Backend selection: `auto` takes the first backend, in the profile's order, whose support() holds;
// a forced mode must be runnable here or selection fails with the reasons. Every backend not chosen
// comes back with why, which is what `shunt doctor` prints.
import { BackendUnsupportedError } from '../errors';
import { profileByName, type MeshProfile } from '../profiles';
import { BACKEND_ORDER, type BackendName, type NodeCapabilities, type ProfileName, type RedirectBackend, type RedirectMode, type Support } from '../types';
import { supportFromRules } from './rules';

/** Anything that can say whether it runs on a node: a real backend, or a rules-only stand-in. */
export type SupportSource = Pick<RedirectBackend, 'name' | 'support'>;

export interface Selection<B extends SupportSource = SupportSource> {
  chosen: B;
  rejected: { name: BackendName; reasons: string[] }[];
  /** Every backend considered, in order, with its support verdict (for `doctor`). */
  table: { name: BackendName; support: Support; chosen: boolean }[];
}

/** A SupportSource that answers from SUPPORT_RULES alone (doctor before a backend is loaded, tests). */
export function rulesBackend(name: BackendName): SupportSource {
  return { name, support: (caps) => supportFromRules(name, caps) };
}

function safeSupport(b: SupportSource, caps: NodeCapabilities): Support {
  try {
    return b.support(caps);
  } catch (err) {
    return { ok: false, reasons: [`support() threw: ${(err as Error).message}`] };
  }
}

export function selectBackend<B extends SupportSource>(
  mode: RedirectMode,
  caps: NodeCapabilities,
  backends: readonly B[],
  opts: { profile?: ProfileName | MeshProfile } = {},
): Selection<B> {
  const profile = typeof opts.profile === 'string' ? profileByName(opts.profile) : opts.profile;
  const order: readonly BackendName[] = profile ? profile.backendOrder : BACKEND_ORDER;
  const byName = new Map(backends.map((b) => [b.name, b] as const));
  const table: Selection<B>['table'] = [];
  const rejected: Selection<B>['rejected'] = [];
  const profileNote = profile ? ` for profile ${profile.name}` : '';

  for (const name of BACKEND_ORDER) {
    if (order.includes(name)) continue;
    if (byName.has(name) || name === mode) rejected.push({ name, reasons: [`${name} does not serve${profileNote}`] });
  }

  if (mode !== 'auto') {
    const forced = byName.get(mode);
    if (!order.includes(mode)) {
      throw new BackendUnsupportedError(`redirectMode=${mode}: ${mode} does not serve${profileNote} (it serves ${order.join(', ')})`, rejected);
    }
    if (!forced) throw new BackendUnsupportedError(`redirectMode=${mode}: no ${mode} backend is available in this build`, rejected);
    const support = safeSupport(forced, caps);
    table.push({ name: mode, support, chosen: support.ok });
    if (!support.ok) {
      const reasons = support.reasons;
      throw new BackendUnsupportedError(`redirectMode=${mode} cannot run on this node: ${reasons.join('; ')}`, [...rejected, { name: mode, reasons }]);
    }
    for (const name of order) {
      if (name === mode || !byName.has(name)) continue;
      const s = safeSupport(byName.get(name)!, caps);
      table.push({ name, support: s, chosen: false });
      rejected.push({ name, reasons: [`redirectMode=${mode} was forced`, ...(s.ok ? [] : s.reasons)] });
    }
    return { chosen: forced, rejected, table };
  }

  let chosen: B | undefined;
  for (const name of order) {
    const b = byName.get(name);
    if (!b) {
      rejected.push({ name, reasons: ['not available in this build'] });
      continue;
    }
    const support = safeSupport(b, caps);
    table.push({ name, support, chosen: !chosen && support.ok });
    if (!chosen && support.ok) {
      chosen = b;
      continue;
    }
    rejected.push({ name, reasons: support.ok ? [`supported, but ${chosen!.name} comes first`] : support.reasons });
  }
  if (!chosen) {
    throw new BackendUnsupportedError(
      `redirectMode=auto: no backend can run on this node${profileNote}: ${rejected.map((r) => `${r.name}: ${r.reasons.join('; ')}`).join(' | ')}`,
      rejected,
    );
  }
  return { chosen, rejected, table };
}
