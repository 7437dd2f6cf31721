// Validates Kubernetes objects (a JSON array on stdin) against the API schema as compiled into
// @kubernetes/client-node's generated models: every field must exist in the model (unknown
// fields are errors, like `kubectl apply --validate=strict`), have the model's type, and the
// fields the OpenAPI spec marks required (non-optional in the model's .d.ts) must be present.
// Then the values: enums and formats (imagePullPolicy, resource quantities, …) from the Kubernetes
// OpenAPI schema as shipped in `kubernetes-models` (its ajv validators are generated from the
// release's OpenAPI v3 spec; client-node's models carry types only), and the two rules the API
// server enforces in code, not in the schema: ports are 1..65535, and a workload's selector
// matches its pod template's labels.
// Prints a JSON array of {object, problems[]}. ESM because client-node 1.x is ESM-only.
import * as k8s from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const modelsDir = path.join(path.dirname(require.resolve('@kubernetes/client-node')), 'gen', 'models');

// Kinds outside the core API groups are not in client-node: the caller checks those itself.
const KIND_MODELS = {
  'v1/ServiceAccount': 'V1ServiceAccount',
  'v1/Service': 'V1Service',
  'v1/ConfigMap': 'V1ConfigMap',
  'v1/Namespace': 'V1Namespace',
  'apps/v1/DaemonSet': 'V1DaemonSet',
  'rbac.authorization.k8s.io/v1/ClusterRole': 'V1ClusterRole',
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': 'V1ClusterRoleBinding',
  'rbac.authorization.k8s.io/v1/Role': 'V1Role',
  'rbac.authorization.k8s.io/v1/RoleBinding': 'V1RoleBinding',
};

const requiredCache = new Map();
function requiredFields(model) {
  if (!requiredCache.has(model)) {
    const dts = readFileSync(path.join(modelsDir, `${model}.d.ts`), 'utf8');
    requiredCache.set(model, [...dts.matchAll(/^\s+'([A-Za-z0-9_$]+)': /gm)].map((m) => m[1]));
  }
  return requiredCache.get(model);
}

function checkType(type, value, at, problems, attrName) {
  if (value === null || value === undefined) return;
  const arr = /^Array<(.+)>$/.exec(type);
  if (arr) {
    if (!Array.isArray(value)) return problems.push(`${at}: expected an array, got ${JSON.stringify(value)}`);
    value.forEach((v, i) => checkType(arr[1], v, `${at}[${i}]`, problems));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    if (typeof value !== 'object' || Array.isArray(value)) return problems.push(`${at}: expected a map, got ${JSON.stringify(value)}`);
    for (const [k, v] of Object.entries(value)) {
      // Resource quantities are int-or-string in the API even though the model says string.
      if (map[1] === 'string' && (attrName === 'limits' || attrName === 'requests') && typeof v === 'number') continue;
      checkType(map[1], v, `${at}.${k}`, problems);
    }
    return;
  }
  switch (type) {
    case 'string':
    case 'Date':
      if (typeof value !== 'string') problems.push(`${at}: expected a string, got ${JSON.stringify(value)}`);
      return;
    case 'number':
      if (typeof value !== 'number') problems.push(`${at}: expected a number, got ${JSON.stringify(value)}`);
      return;
    case 'boolean':
      if (typeof value !== 'boolean') problems.push(`${at}: expected a boolean, got ${JSON.stringify(value)}`);
      return;
    case 'IntOrString':
      if (typeof value !== 'string' && typeof value !== 'number') problems.push(`${at}: expected an int or a string, got ${JSON.stringify(value)}`);
      return;
    case 'any':
    case 'object':
      return;
  }
  const cls = k8s[type];
  if (!cls || typeof cls.getAttributeTypeMap !== 'function') return problems.push(`${at}: validator does not know type ${type}`);
  if (typeof value !== 'object' || Array.isArray(value)) return problems.push(`${at}: expected an object (${type}), got ${JSON.stringify(value)}`);
  const attrs = new Map(cls.getAttributeTypeMap().map((a) => [a.baseName, a]));
  for (const [k, v] of Object.entries(value)) {
    const a = attrs.get(k);
    if (!a) problems.push(`${at}: unknown field "${k}" (${type})`);
    else checkType(a.type, v, `${at}.${k}`, problems, k);
  }
  for (const r of requiredFields(type)) {
    const baseName = attrs.get(r)?.baseName ?? r;
    if (!(baseName in value)) problems.push(`${at}: missing required field "${baseName}" (${type})`);
  }
}

/** enums, formats, patterns: kubernetes-models' validator for the kind (throws listing every violation). */
async function schemaProblems(obj, at) {
  const groupVersion = obj.apiVersion.includes('/') ? obj.apiVersion : `v1`;
  let mod;
  try {
    mod = await import(`kubernetes-models/${groupVersion}/${obj.kind}`);
  } catch {
    return [`${at}: no schema for ${obj.apiVersion} ${obj.kind} in kubernetes-models`];
  }
  const Model = mod[obj.kind] ?? mod.default;
  try {
    new Model(obj).validate();
    return [];
  } catch (e) {
    // "data/spec/…/imagePullPolicy must be equal to one of the allowed values, data/… must match format "quantity", …"
    return String(e.message)
      .split(/, (?=data\/)/)
      .filter((m) => !/must match exactly one schema in "oneOf"|must be number$|must be integer$/.test(m))
      .map((m) => `${at}: ${m.replace(/^data\//, '').replace(/\//g, '.')}${valueHint(obj, m)}`);
  }
}

function valueHint(obj, message) {
  const path = /^data\/(\S+)/.exec(message)?.[1];
  if (!path) return '';
  let v = obj;
  for (const k of path.split('/')) v = v?.[k];
  return v === undefined || typeof v === 'object' ? '' : ` (got ${JSON.stringify(v)})`;
}

const PORT_FIELDS = new Set(['containerPort', 'hostPort', 'port', 'nodePort']);
/** Every numeric port field anywhere in the object is 1..65535 (targetPort too when it is a number). */
function portProblems(v, at, out) {
  if (Array.isArray(v)) return v.forEach((x, i) => portProblems(x, `${at}[${i}]`, out));
  if (!v || typeof v !== 'object') return;
  for (const [k, x] of Object.entries(v)) {
    if ((PORT_FIELDS.has(k) || k === 'targetPort') && typeof x === 'number' && !(Number.isInteger(x) && x >= 1 && x <= 65535)) {
      out.push(`${at}.${k}: ${x} is not a port (1..65535)`);
    } else portProblems(x, `${at}.${k}`, out);
  }
}

/** Deployment/DaemonSet/StatefulSet/ReplicaSet: spec.selector must select spec.template's labels. */
function selectorProblems(obj, at) {
  const sel = obj.spec?.selector;
  const labels = obj.spec?.template?.metadata?.labels ?? {};
  if (!sel || !obj.spec?.template) return [];
  const out = [];
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) {
    if (labels[k] !== v) out.push(`${at}: spec.selector.matchLabels ${k}=${v} does not match the template's labels (${k}=${labels[k] ?? '<unset>'}): the workload would select no pod of its own`);
  }
  for (const e of sel.matchExpressions ?? []) {
    const has = e.key in labels;
    const ok = e.operator === 'In' ? has && e.values.includes(labels[e.key]) : e.operator === 'NotIn' ? !has || !e.values.includes(labels[e.key]) : e.operator === 'Exists' ? has : !has;
    if (!ok) out.push(`${at}: spec.selector.matchExpressions ${e.key} ${e.operator} does not match the template's labels`);
  }
  return out;
}

const objects = JSON.parse(readFileSync(0, 'utf8'));
const results = [];
for (const obj of objects) {
  const key = `${obj.apiVersion}/${obj.kind}`;
  const model = KIND_MODELS[key];
  if (!model) {
    results.push({ object: key, problems: [], unchecked: true });
    continue;
  }
  const problems = [];
  const at = `${obj.kind}/${obj.metadata?.name ?? '?'}`;
  checkType(model, obj, at, problems);
  problems.push(...(await schemaProblems(obj, at)));
  portProblems(obj, at, problems);
  problems.push(...selectorProblems(obj, at));
  results.push({ object: key, problems });
}
process.stdout.write(JSON.stringify(results));
