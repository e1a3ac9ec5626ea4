// Shared by the deploy checks: finding and parsing the YAML under deploy/, mapping an object's
// apiVersion/kind to its model class from kubernetes-models, @kubernetes-models/istio or
// @kubernetes-models/gateway-api, schema validation, and detection of fields the schema does
// not know (the models' validators ignore them; `kubectl apply` rejects them).
"use strict";
const fs = require("fs");
const path = require("path");
const YAML = require("yaml");

const SOURCE_DIR = process.env.DEPLOY_SOURCE_DIR || path.resolve(__dirname, "../../..");
const DEPLOY_DIR = path.join(SOURCE_DIR, "deploy");

// Every *.yaml / *.yml below `dir`, sorted.
function yamlFiles(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(e.name)) out.push(p);
  }
  return out.sort();
}

// The documents of a YAML text (empty ones dropped). Throws with file and line on a syntax error.
function parseDocs(text, file) {
  const docs = YAML.parseAllDocuments(text, { prettyErrors: true });
  const out = [];
  for (const d of docs) {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
    const v = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

function loadDocs(file) {
  return parseDocs(fs.readFileSync(file, "utf8"), file);
}

// Strategic-merge patch files the kustomizations name (partial objects), as absolute paths.
function patchFiles() {
  const out = new Set();
  for (const f of yamlFiles(DEPLOY_DIR).filter((f) => path.basename(f) === "kustomization.yaml")) {
    for (const k of loadDocs(f)) {
      for (const p of (k && k.patches) || []) {
        if (p && p.path) out.add(path.resolve(path.dirname(f), p.path));
      }
    }
  }
  return out;
}

function rel(file) {
  return path.relative(SOURCE_DIR, file);
}

function describe(obj) {
  const m = (obj && obj.metadata) || {};
  return `${obj.kind || "?"} ${m.namespace ? m.namespace + "/" : ""}${m.name || "?"}`;
}

// apiVersion -> module path of its models.
function modelModule(apiVersion) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "") return `kubernetes-models/${version}`;
  if (group.endsWith(".istio.io")) return `@kubernetes-models/istio/${group}/${version}`;
  if (group === "gateway.networking.k8s.io") return `@kubernetes-models/gateway-api/${group}/${version}`;
  return `kubernetes-models/${group}/${version}`;
}

// The model class for obj's apiVersion/kind, or an error message.
function modelClass(obj) {
  if (typeof obj.apiVersion !== "string" || typeof obj.kind !== "string") {
    return { error: "apiVersion and kind must be strings" };
  }
  let mod;
  try {
    mod = require(modelModule(obj.apiVersion));
  } catch (e) {
    return { error: `no schema package for apiVersion ${obj.apiVersion}` };
  }
  const cls = mod[obj.kind];
  if (typeof cls !== "function") return { error: `no schema for ${obj.apiVersion} ${obj.kind}` };
  return { cls };
}

// Runs the class's validator on a proxy of the object that records which keys the validator
// reads. A key it never reads, in an object whose keys it never enumerates (maps such as labels
// are enumerated), is unknown to the schema.
function unknownFields(cls, obj) {
  const seen = new Map();  // target object -> Set of keys read ("*" = enumerated)
  const proxies = new WeakMap();
  const wrap = (v) => {
    if (v === null || typeof v !== "object") return v;
    if (proxies.has(v)) return proxies.get(v);
    const keys = new Set();
    seen.set(v, keys);
    const p = new Proxy(v, {
      get(t, k, r) {
        if (typeof k === "string") keys.add(k);
        return wrap(Reflect.get(t, k, r));
      },
      has(t, k) {
        if (typeof k === "string") keys.add(k);
        return Reflect.has(t, k);
      },
      ownKeys(t) {
        keys.add("*");
        return Reflect.ownKeys(t);
      },
      getOwnPropertyDescriptor(t, k) {
        if (typeof k === "string") keys.add(k);
        return Reflect.getOwnPropertyDescriptor(t, k);
      },
    });
    proxies.set(v, p);
    return p;
  };
  const model = new cls(obj);
  try {
    cls.prototype.validate.call(wrap(model));
  } catch (e) {
    return [];  // schema errors are reported by validate(); unknown fields only for valid objects
  }
  const out = [];
  const walk = (v, where) => {
    if (v === null || typeof v !== "object") return;
    if (Array.isArray(v)) {
      v.forEach((x, i) => walk(x, `${where}[${i}]`));
      return;
    }
    const keys = seen.get(v);
    if (!keys || keys.has("*")) return;  // not visited (no schema below), or a map
    for (const k of Object.keys(v)) {
      if (!keys.has(k)) out.push(where ? `${where}.${k}` : k);
      else walk(v[k], where ? `${where}.${k}` : k);
    }
  };
  walk(model, "");
  return out;
}

function errorText(e) {
  if (e && Array.isArray(e.errors) && e.errors.length) {
    return e.errors
      .map((x) => {
        const field = (x.instancePath || "").replace(/^\//, "").replace(/\//g, ".") || "(object)";
        const extra = x.params && x.params.missingProperty ? ` (${x.params.missingProperty})` : "";
        const allowed = x.params && x.params.allowedValues ? ` ${JSON.stringify(x.params.allowedValues)}` : "";
        return `${field}: ${x.message}${extra}${allowed}`;
      })
      .join("; ");
  }
  return String(e && e.message ? e.message : e);
}

// Validates one object: [] when valid, else messages naming the field. `partial` (patches):
// "required" errors are ignored, the rest (types, enums, unknown fields) still count.
// Fields Istio's CRDs have that @kubernetes-models/istio lacks (its newest release, 3.0.1, has
// the AuthorizationPolicy of Istio before 1.20): AuthorizationPolicy and RequestAuthentication
// spec.targetRef (1.20) and spec.targetRefs (1.22), the only way to attach a policy to a waypoint. Each reference is an
// Istio PolicyTargetReference: kind and name (non-empty strings) and optional group and
// namespace (strings), nothing else. They are checked here and removed from a copy, and the
// package validates the rest. Returns [errors, the copy].
function newerIstioFields(obj) {
  if (!["AuthorizationPolicy", "RequestAuthentication"].includes(obj.kind) ||
      !/^security\.istio\.io\//.test(obj.apiVersion) ||
      !obj.spec || typeof obj.spec !== "object") {
    return [[], obj];
  }
  const errors = [];
  const checkRef = (ref, where) => {
    if (!ref || typeof ref !== "object" || Array.isArray(ref)) {
      errors.push(`${where}: must be an object`);
      return;
    }
    for (const k of ["kind", "name"]) {
      if (typeof ref[k] !== "string" || ref[k] === "") errors.push(`${where}.${k}: must be a non-empty string`);
    }
    for (const k of ["group", "namespace"]) {
      if (k in ref && typeof ref[k] !== "string") errors.push(`${where}.${k}: must be a string`);
    }
    for (const k of Object.keys(ref)) {
      if (!["group", "kind", "name", "namespace"].includes(k)) errors.push(`${where}.${k}: unknown field`);
    }
  };
  const spec = { ...obj.spec };
  if ("targetRef" in spec) {
    checkRef(spec.targetRef, "spec.targetRef");
    delete spec.targetRef;
  }
  if ("targetRefs" in spec) {
    if (!Array.isArray(spec.targetRefs)) errors.push("spec.targetRefs: must be a list");
    else spec.targetRefs.forEach((r, i) => checkRef(r, `spec.targetRefs[${i}]`));
    delete spec.targetRefs;
  }
  return [errors, { ...obj, spec }];
}

function validateObject(obj, { partial = false } = {}) {
  const found = modelClass(obj);
  if (found.error) return [found.error];
  const [errors, rest] = newerIstioFields(obj);
  obj = rest;
  try {
    new found.cls(obj).validate();
  } catch (e) {
    let errs = Array.isArray(e.errors) ? e.errors : null;
    if (partial && errs) errs = errs.filter((x) => x.keyword !== "required");
    if (!errs) errors.push(errorText(e));
    else if (errs.length) errors.push(errorText({ errors: errs }));
  }
  if (!errors.length) {
    for (const f of unknownFields(found.cls, obj)) errors.push(`${f}: unknown field`);
  }
  return errors;
}

module.exports = {
  SOURCE_DIR,
  DEPLOY_DIR,
  yamlFiles,
  parseDocs,
  loadDocs,
  patchFiles,
  rel,
  describe,
  modelClass,
  validateObject,
};
