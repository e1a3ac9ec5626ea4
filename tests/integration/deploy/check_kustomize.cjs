// Acceptance 1 (the kustomizations build): every kustomization.yaml under deploy/ is resolved
// the way kustomize would for the features used here (resources: files and folders, namespace,
// images, strategic-merge patches including $patch: delete): each file exists and parses, each
// patch targets an object that exists, no two objects share kind/namespace/name, each image
// override matches a container. CI has no kubectl or kustomize (Debian ships neither); where
// `kubectl` is on PATH, `kubectl kustomize` must also build each folder, yield the same objects,
// and every object it yields must validate against its schema (patches applied).
"use strict";
const fs = require("fs");
const path = require("path");
const { execFileSync } = require("child_process");
const L = require("./lib.cjs");

const KNOWN_KEYS = new Set(["apiVersion", "kind", "resources", "namespace", "patches", "images"]);
const CLUSTER_SCOPED = new Set([
  "Namespace", "ClusterRole", "ClusterRoleBinding", "GatewayClass", "PriorityClass",
  "CustomResourceDefinition", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
]);
const failures = [];

const group = (apiVersion) => (apiVersion.includes("/") ? apiVersion.split("/")[0] : "");
const idOf = (o) => `${group(o.apiVersion)}/${o.kind} ${o.metadata.namespace || ""}/${o.metadata.name}`;

function containers(o) {
  const spec = o.spec && o.spec.template && o.spec.template.spec;
  return spec ? [...(spec.initContainers || []), ...(spec.containers || [])] : [];
}

// Resolves the kustomization in `dir` into a list of objects, recording failures.
function resolve(dir, stack = []) {
  const kfile = path.join(dir, "kustomization.yaml");
  const where = L.rel(kfile);
  if (stack.includes(dir)) {
    failures.push(`${where}: resource cycle through ${stack.map(L.rel).join(" -> ")}`);
    return [];
  }
  if (!fs.existsSync(kfile)) {
    failures.push(`${L.rel(dir)}: no kustomization.yaml`);
    return [];
  }
  const [k] = L.loadDocs(kfile);
  if (k.apiVersion !== "kustomize.config.k8s.io/v1beta1" || k.kind !== "Kustomization") {
    failures.push(`${where}: apiVersion/kind must be kustomize.config.k8s.io/v1beta1 Kustomization`);
  }
  for (const key of Object.keys(k)) {
    if (!KNOWN_KEYS.has(key)) failures.push(`${where}: key "${key}" is not handled by this check (extend check_kustomize.cjs)`);
  }
  let objects = [];
  for (const r of k.resources || []) {
    const p = path.resolve(dir, r);
    if (!fs.existsSync(p)) {
      failures.push(`${where}: resource ${r} does not exist`);
    } else if (fs.statSync(p).isDirectory()) {
      objects.push(...resolve(p, [...stack, dir]));
    } else {
      try {
        const docs = L.loadDocs(p);
        if (!docs.length) failures.push(`${where}: resource ${r} has no objects`);
        for (const d of docs) {
          if (!d.apiVersion || !d.kind || !d.metadata || !d.metadata.name) {
            failures.push(`${where}: ${r}: an object without apiVersion, kind or metadata.name`);
          } else objects.push(structuredClone(d));
        }
      } catch (e) {
        failures.push(`${where}: ${e.message}`);
      }
    }
  }
  // Patches match the objects as the resources declare them (before this level's namespace).
  for (const [i, p] of (k.patches || []).entries()) {
    let docs;
    try {
      if (p.path) {
        const pf = path.resolve(dir, p.path);
        if (!fs.existsSync(pf)) {
          failures.push(`${where}: patches[${i}]: ${p.path} does not exist`);
          continue;
        }
        docs = L.loadDocs(pf);
      } else if (typeof p.patch === "string") {
        docs = L.parseDocs(p.patch, `${where} patches[${i}]`);
      } else {
        failures.push(`${where}: patches[${i}] has neither path nor patch`);
        continue;
      }
    } catch (e) {
      failures.push(`${where}: patches[${i}]: ${e.message}`);
      continue;
    }
    if (docs.length !== 1) {
      failures.push(`${where}: patches[${i}] must hold exactly one object (kustomize mishandles several)`);
      continue;
    }
    const d = docs[0];
    const t = p.target || { kind: d.kind, name: d.metadata && d.metadata.name, namespace: d.metadata && d.metadata.namespace };
    const matches = objects.filter((o) => (!t.kind || o.kind === t.kind) && (!t.name || o.metadata.name === t.name) &&
      (!t.namespace || CLUSTER_SCOPED.has(o.kind) || (o.metadata.namespace || "") === t.namespace));
    if (!matches.length) {
      failures.push(`${where}: patches[${i}] targets ${t.kind} ${t.namespace ? t.namespace + "/" : ""}${t.name}, which no resource defines`);
    } else if (d.$patch === "delete") {
      objects = objects.filter((o) => !matches.includes(o));
    }
  }
  if (k.namespace) {
    for (const o of objects) {
      if (!CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace = k.namespace;
      for (const s of o.subjects || []) {
        if (s.kind === "ServiceAccount") s.namespace = k.namespace;
      }
    }
  }
  for (const img of k.images || []) {
    const used = objects.some((o) => containers(o).some((c) => (c.image || "").split(/[:@]/)[0] === img.name));
    if (!used) failures.push(`${where}: images: ${img.name} matches no container image`);
  }
  const seen = new Set();
  for (const o of objects) {
    const id = idOf(o);
    if (seen.has(id)) failures.push(`${where}: duplicate object ${id}`);
    seen.add(id);
  }
  return objects;
}

function onPath(cmd) {
  return (process.env.PATH || "").split(":").some((d) => {
    try {
      fs.accessSync(path.join(d, cmd), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

const dirs = L.yamlFiles(L.DEPLOY_DIR)
  .filter((f) => path.basename(f) === "kustomization.yaml")
  .map((f) => path.dirname(f));
if (!dirs.length) failures.push("deploy/: no kustomization.yaml");
const haveKubectl = onPath("kubectl");
const summary = [];
for (const dir of dirs) {
  const before = failures.length;
  const objects = resolve(dir);
  if (failures.length !== before) continue;
  let note = "";
  if (haveKubectl) {
    try {
      const out = execFileSync("kubectl", ["kustomize", dir], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
      const built = L.parseDocs(out, `kubectl kustomize ${L.rel(dir)}`);
      const a = objects.map(idOf).sort().join("\n");
      const b = built.map(idOf).sort().join("\n");
      if (a !== b) {
        failures.push(`${L.rel(dir)}: kubectl kustomize built other objects than this check resolved:\n    kubectl: ${b.replace(/\n/g, ", ")}\n    check:   ${a.replace(/\n/g, ", ")}`);
      }
      for (const o of built) {
        for (const e of L.validateObject(o)) failures.push(`kubectl kustomize ${L.rel(dir)}: ${L.describe(o)}: ${e}`);
      }
      note = ", kubectl kustomize agrees";
    } catch (e) {
      failures.push(`kubectl kustomize ${L.rel(dir)} failed: ${(e.stderr || e.message).split("\n")[0]}`);
    }
  }
  summary.push(`${L.rel(dir)}: ${objects.length} objects${note}`);
}

if (failures.length) {
  console.error(`kustomizations: ${failures.length} problem(s):`);
  for (const f of failures) console.error(`  ${f}`);
  process.exit(1);
}
for (const s of summary) console.log(s);
if (!haveKubectl) console.log("kubectl not on PATH: `kubectl kustomize` cross-check skipped (the resolution above ran)");
