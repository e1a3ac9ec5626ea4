// Acceptance 1 (schemas): every object in every YAML file under deploy/ (and the simulated
// cluster's workload manifests under sim/examples/) validates against the
// Kubernetes, Istio or Gateway API schema of its apiVersion/kind, with no field the schema does
// not know. Strategic-merge patch files are validated without "required" (they are partial on
// purpose); kustomization.yaml files are checked by check_kustomize.cjs. The objects
// deploy/gen-certs.sh prints are validated too.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { execFileSync } = require("child_process");
const L = require("./lib.cjs");

const failures = [];
let checked = 0;

// Patch files named by the kustomizations: partial objects.
const patchFiles = L.patchFiles();
const files = L.yamlFiles(L.DEPLOY_DIR);

function check(source, obj, partial) {
  checked++;
  for (const e of L.validateObject(obj, { partial })) {
    failures.push(`${source}: ${L.describe(obj)} (${obj.apiVersion}): ${e}`);
  }
}

for (const f of files) {
  if (path.basename(f) === "kustomization.yaml") continue;
  let docs;
  try {
    docs = L.loadDocs(f);
  } catch (e) {
    failures.push(String(e.message));
    continue;
  }
  if (!docs.length) failures.push(`${L.rel(f)}: no objects`);
  for (const d of docs) check(L.rel(f), d, patchFiles.has(f));
}

// The simulated cluster's workloads (sim/examples) are the same kind of Kubernetes objects a
// user applies to a cluster: the files that describe the workloads to meshsim must validate too.
// (The self-test runs this script on copies of deploy/ alone, without sim/.)
const examplesDir = path.join(L.SOURCE_DIR, "sim/examples");
for (const f of fs.existsSync(examplesDir) ? L.yamlFiles(examplesDir) : []) {
  let docs;
  try {
    docs = L.loadDocs(f);
  } catch (e) {
    failures.push(String(e.message));
    continue;
  }
  for (const d of docs) check(L.rel(f), d, false);
}

// deploy/gen-certs.sh: its objects for the default namespace and a waypoint's ConfigMap.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "deploy-gen-certs-"));
try {
  const script = path.join(L.DEPLOY_DIR, "gen-certs.sh");
  const dir = path.join(tmp, "ca");
  const quiet = { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] };
  const all = execFileSync(script, ["--dir", dir], quiet);
  const root = execFileSync(script, ["--dir", dir, "--root-configmap", "apps"], quiet);
  const objs = [...L.parseDocs(all, "gen-certs.sh output"), ...L.parseDocs(root, "gen-certs.sh --root-configmap output")];
  const names = objs.map(L.describe).sort().join(", ");
  const want = "ConfigMap ambient-mesh/mesh-root-cert, ConfigMap apps/mesh-root-cert, Secret ambient-mesh/meshd-ca, Secret ambient-mesh/meshd-tls";
  if (names !== want) failures.push(`deploy/gen-certs.sh printed ${names}; expected ${want}`);
  for (const o of objs) check("deploy/gen-certs.sh", o, false);
  // The names the manifests mount must be the names the script makes.
  const meshd = L.loadDocs(path.join(L.DEPLOY_DIR, "daemonset/meshd.yaml")).find((o) => o.kind === "Deployment");
  for (const v of meshd.spec.template.spec.volumes) {
    if (v.secret && !objs.some((o) => o.kind === "Secret" && o.metadata.name === v.secret.secretName)) {
      failures.push(`deploy/daemonset/meshd.yaml mounts Secret ${v.secret.secretName}, which gen-certs.sh does not make`);
    }
  }
  // meshd's serving certificate must verify for the name ztunnel dials.
  const ds = L.loadDocs(path.join(L.DEPLOY_DIR, "daemonset/ztunnel.yaml")).find((o) => o.kind === "DaemonSet");
  const xds = ds.spec.template.spec.containers.find((c) => c.name === "ztunnel").env.find((e) => e.name === "XDS_ADDRESS").value;
  const host = new URL(xds).hostname;
  try {
    execFileSync("openssl", ["verify", "-CAfile", path.join(dir, "ca-cert.pem"), "-verify_hostname", host,
      path.join(dir, "meshd-cert.pem")], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    failures.push(`gen-certs.sh: meshd's certificate does not verify for ${host} (XDS_ADDRESS): ${e.stderr || e.message}`);
  }
  checked++;
} catch (e) {
  failures.push(`deploy/gen-certs.sh failed: ${e.stderr || e.message}`);
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}

// Least privilege, kept in step with the code: meshd's ClusterRole grants exactly list and
// watch on the resources meshd's Kubernetes source reads (meshd/kube/protocol.cc).
{
  const src = path.join(L.SOURCE_DIR, "meshd/kube/protocol.cc");
  const rbac = L.loadDocs(path.join(L.DEPLOY_DIR, "daemonset/rbac.yaml"));
  const role = rbac.find((o) => o.kind === "ClusterRole" && o.metadata.name === "ambient-mesh-meshd");
  if (!role) failures.push("deploy/daemonset/rbac.yaml: no ClusterRole ambient-mesh-meshd");
  else if (fs.existsSync(src)) {
    const read = new Set();
    for (const m of fs.readFileSync(src, "utf8").matchAll(/\{"[A-Za-z]+", "([\w./]+)", "([a-z]+)"[,}]/g)) {
      const group = m[1].includes("/") ? m[1].split("/")[0] : "";
      read.add(`${group}/${m[2]}`);
    }
    const granted = new Set();
    for (const r of role.rules || []) {
      const verbs = [...(r.verbs || [])].sort().join(",");
      if (verbs !== "list,watch") failures.push(`ClusterRole ambient-mesh-meshd: verbs ${verbs} on ${r.resources}; meshd only lists and watches`);
      for (const g of r.apiGroups || []) for (const res of r.resources || []) granted.add(`${g}/${res}`);
    }
    const a = [...read].sort().join(" ");
    const b = [...granted].sort().join(" ");
    if (!read.size) failures.push(`${L.rel(src)}: found no resource types (update check_manifests.cjs)`);
    else if (a !== b) failures.push(`ClusterRole ambient-mesh-meshd grants [${b}] but meshd reads [${a}] (${L.rel(src)})`);
    checked++;
  }
}

if (failures.length) {
  console.error(`deploy manifests: ${failures.length} problem(s):`);
  for (const f of failures) console.error(`  ${f}`);
  process.exit(1);
}
console.log(`deploy manifests: ${checked} objects valid against the Kubernetes, Istio and Gateway API schemas`);
