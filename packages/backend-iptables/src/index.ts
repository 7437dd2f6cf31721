// @shunt/backend-iptables: Istio-compatible interception rules in the pod netns (istio-iptables'
// sidecar set, istio-cni's ambient in-pod set), iptables-legacy or -nft; the universal fallback.
export { IptablesBackend } from './backend';
export { renderRules, capturesTraffic, podFamilies, CHAINS } from './render';
export { describePlan } from './describe';
export { planFingerprint, canonicalPlanText } from './fingerprint';
export { buildTransaction } from './transaction';
export { parseSave } from './save';
export { iptablesSupport, chooseVariant } from './support';
export { PodRulesError, RestoreError } from './errors';
export { renderAmbientRules, AMBIENT, AMBIENT_CHAINS } from './render-ambient';
export { DEFAULT_STATE_DIR, RECORD_FORMAT, StateStore, recordFileName } from './state-store';
export type { PodRecord, InvalidRecord } from './state-store';
export { identifyNetns, sameNetns } from './netns-identity';
export type { NetnsIdentity, NetnsCookieReader } from './netns-identity';
export type { SweepReport, SweptNetns } from './sweep';
export { DEFAULT_RENDER_OPTIONS, renderOptionsFrom } from './options';
export type { IptablesBackendOptions, IptablesVariant, RenderOptions } from './options';
export type { RulePlan, FamilyRules, TableRules, RoutingPlan, Table } from './plan';
