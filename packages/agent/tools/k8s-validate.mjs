// Validates Kubernetes objects (a JSON array on stdin) against the API schema as compiled into
// @kubernetes/client-node's generated models: every field must exist in the model (unknown
// fields are errors, like `kubectl apply --validate=strict`), have the model's type, and the
// fields the OpenAPI spec marks required (non-optional in the model's .d.ts) must be present.
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

const objects = JSON.parse(readFileSync(0, 'utf8'));
const results = objects.map((obj) => {
  const key = `${obj.apiVersion}/${obj.kind}`;
  const model = KIND_MODELS[key];
  if (!model) return { object: key, problems: [], unchecked: true };
  const problems = [];
  checkType(model, obj, `${obj.kind}/${obj.metadata?.name ?? '?'}`, problems);
  return { object: key, problems };
});
process.stdout.write(JSON.stringify(results));
