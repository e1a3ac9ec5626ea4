// Acceptance 3: the security context of every workload under deploy/, and the DaemonSet's
// capabilities against the table in deploy/README.md (parsed from it, so the docs and the
// manifest cannot drift apart):
// - no container is privileged (privileged must be present and false);
// - readOnlyRootFilesystem is true;
// - capabilities.drop is exactly [ALL] and comes before add;
// - the DaemonSet's containers add exactly the capabilities the README table lists for them,
//   spelled without the CAP_ prefix, no duplicates; every table row names a real container;
// - allowPrivilegeEscalation is true exactly where SYS_ADMIN is added (it implies escalation),
//   false elsewhere; containers without added capabilities run as non-root.
"use strict";
const fs = require("fs");
const path = require("path");
const L = require("./lib.cjs");

const failures = [];
const fail = (m) => failures.push(m);

// The capability table: rows "| container | `CAP` | why |" under "### Capabilities".
function readmeCapabilities() {
  const file = path.join(L.DEPLOY_DIR, "README.md");
  const lines = fs.readFileSync(file, "utf8").split("\n");
  const start = lines.findIndex((l) => /^#+\s+Capabilities\s*$/.test(l));
  if (start < 0) throw new Error("deploy/README.md: no \"Capabilities\" heading");
  const table = {};
  let header = null;
  for (let i = start + 1; i < lines.length && !/^#/.test(lines[i]); i++) {
    const l = lines[i].trim();
    if (!l.startsWith("|")) {
      if (header && Object.keys(table).length) break;  // the table ended
      continue;
    }
    const cells = l.slice(1, l.endsWith("|") ? -1 : undefined).split("|").map((c) => c.trim());
    if (!header) {
      header = cells.map((c) => c.toLowerCase());
      if (header[0] !== "container" || header[1] !== "capability") {
        throw new Error(`deploy/README.md: the Capabilities table must start with columns "container | capability", found "${cells.join(" | ")}"`);
      }
      continue;
    }
    if (cells.every((c) => /^:?-+:?$/.test(c))) continue;  // the separator row
    const container = cells[0].replace(/`/g, "");
    const cap = cells[1].replace(/`/g, "");
    if (!cells[2]) fail(`deploy/README.md: capability ${cap} of ${container} has no justification`);
    (table[container] = table[container] || []).push(cap);
  }
  if (!Object.keys(table).length) throw new Error("deploy/README.md: the Capabilities table has no rows");
  return table;
}

function podTemplates() {
  const out = [];
  for (const f of L.yamlFiles(L.DEPLOY_DIR)) {
    if (path.basename(f) === "kustomization.yaml") continue;
    for (const o of L.loadDocs(f)) {
      const spec = o.spec && o.spec.template && o.spec.template.spec;
      if (spec && spec.containers && o.spec.selector) out.push({ file: L.rel(f), obj: o, spec });
    }
  }
  return out;
}

let table;
try {
  table = readmeCapabilities();
} catch (e) {
  console.error(e.message);
  process.exit(1);
}

const templates = podTemplates();
const daemonset = templates.find((t) => t.obj.kind === "DaemonSet" && t.obj.metadata.name === "ztunnel" && t.file === "deploy/daemonset/ztunnel.yaml");
if (!daemonset) fail("deploy/daemonset/ztunnel.yaml: no DaemonSet ztunnel");

let containersChecked = 0;
for (const t of templates) {
  const all = [...(t.spec.initContainers || []), ...t.spec.containers];
  const isDaemonSet = t === daemonset;
  if (t.spec.securityContext && t.spec.securityContext.privileged !== undefined) {
    fail(`${t.file}: ${L.describe(t.obj)}: privileged belongs in the container securityContext`);
  }
  for (const c of all) {
    containersChecked++;
    const at = `${t.file}: ${L.describe(t.obj)} container ${c.name}`;
    const sc = c.securityContext;
    if (!sc) {
      fail(`${at}: no securityContext`);
      continue;
    }
    if (sc.privileged !== false) fail(`${at}: privileged must be set to false (is ${JSON.stringify(sc.privileged)})`);
    if (sc.readOnlyRootFilesystem !== true) fail(`${at}: readOnlyRootFilesystem must be true`);
    const caps = sc.capabilities || {};
    const keys = Object.keys(caps);
    if (JSON.stringify(caps.drop) !== JSON.stringify(["ALL"])) fail(`${at}: capabilities.drop must be exactly [ALL] (is ${JSON.stringify(caps.drop)})`);
    if (keys.includes("add") && keys.indexOf("drop") > keys.indexOf("add")) fail(`${at}: capabilities.drop must come before add`);
    const add = caps.add || [];
    for (const a of add) {
      if (/^CAP_/i.test(a)) fail(`${at}: capability ${a}: write it without the CAP_ prefix (as Kubernetes expects)`);
      if (a !== a.toUpperCase()) fail(`${at}: capability ${a} must be upper case`);
    }
    if (new Set(add).size !== add.length) fail(`${at}: duplicate capabilities in ${JSON.stringify(add)}`);
    const sysAdmin = add.includes("SYS_ADMIN");
    if (sc.allowPrivilegeEscalation !== sysAdmin) {
      fail(`${at}: allowPrivilegeEscalation must be ${sysAdmin} (${sysAdmin ? "SYS_ADMIN implies it" : "nothing needs it"})`);
    }
    const runAsNonRoot = sc.runAsNonRoot !== undefined ? sc.runAsNonRoot : (t.spec.securityContext || {}).runAsNonRoot;
    if (!add.length && runAsNonRoot !== true) fail(`${at}: adds no capability, so it must run with runAsNonRoot: true`);
    if (isDaemonSet) {
      const documented = table[c.name];
      if (!documented) {
        fail(`${at}: deploy/README.md's Capabilities table has no row for this container`);
      } else {
        const want = [...documented].sort().join(",");
        const have = [...add].sort().join(",");
        if (want !== have) fail(`${at}: adds [${have}] but deploy/README.md documents [${want}]`);
      }
    } else if (add.length) {
      fail(`${at}: adds ${JSON.stringify(add)}; only the node DaemonSet may add capabilities`);
    }
  }
  if (isDaemonSet) {
    for (const name of Object.keys(table)) {
      if (!all.some((c) => c.name === name)) fail(`deploy/README.md: the Capabilities table names container ${name}, which the DaemonSet does not have`);
    }
  }
}

if (failures.length) {
  console.error(`security context: ${failures.length} problem(s):`);
  for (const f of failures) console.error(`  ${f}`);
  process.exit(1);
}
const documented = Object.entries(table).map(([c, caps]) => `${c}: ${caps.join(" ")}`).join("; ");
console.log(`security context: ${containersChecked} containers in ${templates.length} workloads ok; DaemonSet capabilities match deploy/README.md (${documented})`);
