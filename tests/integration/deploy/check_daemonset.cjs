// The node DaemonSet's contract (issue 8, "What to build"), read from deploy/daemonset/ztunnel.yaml
// and deploy/daemonset/rbac.yaml, so an edit cannot quietly drop it:
// - upgrades: RollingUpdate with maxSurge 0 (never two agents on one node's pins) and a
//   maxUnavailable that lets the rollout proceed; hostPID (netns lookup through /proc);
// - the drain: terminationGracePeriodSeconds is longer than ztunnel's
//   CONNECTION_TERMINATION_DEADLINE;
// - health: ztunnel's readiness is GET /healthz/ready on 15021 and its liveness probes 15021;
// - resources: every container of every workload under deploy/ requests cpu and memory;
// - mounts: the bpffs pin folder is a hostPath under /sys/fs/bpf mounted by both containers at
//   the pin root each is told (read-only for ztunnel); the cgroup v2 hierarchy is a read-only
//   hostPath at the agent's --cgroup-root; the ZDS socket is one path (ztunnel's INPOD_UDS, the
//   agent's --zds-socket) in a volume both containers mount;
// - least privilege: the node agent's ClusterRole grants exactly list and watch on the
//   resources of the kinds the agent's Kubernetes source reads (agent/app/app.cc, mapped through
//   meshd/kube/protocol.cc); no Role or ClusterRole under deploy/ grants any other verb; the pod
//   does not automount an API token and only the node-agent container mounts one.
"use strict";
const fs = require("fs");
const path = require("path");
const L = require("./lib.cjs");

const failures = [];
const fail = (m) => failures.push(m);

const dsFile = path.join(L.DEPLOY_DIR, "daemonset/ztunnel.yaml");
const ds = L.loadDocs(dsFile).find((o) => o.kind === "DaemonSet" && o.metadata.name === "ztunnel");
if (!ds) {
  console.error("deploy/daemonset/ztunnel.yaml: no DaemonSet ztunnel");
  process.exit(1);
}
const at = "deploy/daemonset/ztunnel.yaml: DaemonSet ztunnel";
const spec = ds.spec.template.spec;
const container = (name) => spec.containers.find((c) => c.name === name);
const ztunnel = container("ztunnel");
const agent = container("node-agent");
if (!ztunnel || !agent) {
  console.error(`${at}: needs the containers ztunnel and node-agent`);
  process.exit(1);
}
const env = (c, name) => ((c.env || []).find((e) => e.name === name) || {}).value;
const arg = (c, flag) => {
  const args = c.args || [];
  for (let i = 0; i < args.length; i++) {
    if (args[i].startsWith(`${flag}=`)) return args[i].slice(flag.length + 1);
    if (args[i] === flag) return args[i + 1];
  }
  return undefined;
};
const volume = (name) => (spec.volumes || []).find((v) => v.name === name);
// The mount of `c` whose mountPath is `dir` or contains it, and its volume.
const mountFor = (c, dir) => {
  const m = (c.volumeMounts || [])
    .filter((x) => dir === x.mountPath || dir.startsWith(x.mountPath.replace(/\/$/, "") + "/"))
    .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  return m ? { mount: m, volume: volume(m.name) } : null;
};

// Upgrades.
const us = ds.spec.updateStrategy || {};
if (us.type !== "RollingUpdate") fail(`${at}: updateStrategy.type must be RollingUpdate (is ${JSON.stringify(us.type)})`);
const ru = us.rollingUpdate || {};
if (String(ru.maxSurge) !== "0") fail(`${at}: rollingUpdate.maxSurge must be 0: two pods on a node would share the pins and in-pod ports (is ${JSON.stringify(ru.maxSurge)})`);
if (ru.maxUnavailable === undefined || String(ru.maxUnavailable) === "0" || String(ru.maxUnavailable) === "0%") {
  fail(`${at}: rollingUpdate.maxUnavailable must let the rollout proceed with maxSurge 0 (is ${JSON.stringify(ru.maxUnavailable)})`);
}
if (spec.hostPID !== true) fail(`${at}: hostPID must be true (the agent opens /proc/<pid>/ns/net of pod processes)`);

// The drain fits the grace period.
const deadline = env(ztunnel, "CONNECTION_TERMINATION_DEADLINE");
const m = /^(\d+)s$/.exec(deadline || "");
const grace = spec.terminationGracePeriodSeconds;
if (!m) fail(`${at}: container ztunnel must set CONNECTION_TERMINATION_DEADLINE in seconds ("25s"), is ${JSON.stringify(deadline)}`);
else if (!(typeof grace === "number" && grace > Number(m[1]))) {
  fail(`${at}: terminationGracePeriodSeconds (${grace}) must exceed CONNECTION_TERMINATION_DEADLINE (${deadline}) so the drain ends before SIGKILL`);
}

// Health on 15021.
const rp = ztunnel.readinessProbe || {};
if (!rp.httpGet || rp.httpGet.port !== 15021 || rp.httpGet.path !== "/healthz/ready") {
  fail(`${at}: container ztunnel: readinessProbe must be httpGet /healthz/ready on 15021`);
}
const lp = ztunnel.livenessProbe || {};
const livePort = (lp.httpGet || lp.tcpSocket || {}).port;
if (livePort !== 15021) fail(`${at}: container ztunnel: livenessProbe must probe port 15021 (is ${JSON.stringify(livePort)})`);

// Resource requests everywhere.
for (const f of L.yamlFiles(L.DEPLOY_DIR)) {
  if (path.basename(f) === "kustomization.yaml") continue;
  for (const o of L.loadDocs(f)) {
    const s = o.spec && o.spec.template && o.spec.template.spec;
    if (!s || !s.containers || !o.spec.selector) continue;
    for (const c of [...(s.initContainers || []), ...s.containers]) {
      const r = (c.resources || {}).requests || {};
      if (r.cpu === undefined || r.memory === undefined) {
        fail(`${L.rel(f)}: ${L.describe(o)} container ${c.name}: resources.requests must name cpu and memory`);
      }
    }
  }
}

// Mounts: pins, cgroups, the ZDS socket.
const pinRootZ = env(ztunnel, "BPF_PIN_ROOT");
const pinRootA = arg(agent, "--bpf-pin-root");
if (!pinRootZ || pinRootZ !== pinRootA) fail(`${at}: ztunnel's BPF_PIN_ROOT (${pinRootZ}) and the agent's --bpf-pin-root (${pinRootA}) must be the same folder`);
else {
  const z = mountFor(ztunnel, pinRootZ);
  const a = mountFor(agent, pinRootA);
  if (!z || !a || z.mount.name !== a.mount.name) fail(`${at}: both containers must mount the same volume at the pin root ${pinRootZ}`);
  else {
    const hp = (z.volume || {}).hostPath;
    if (!hp || !(hp.path === "/sys/fs/bpf" || hp.path.startsWith("/sys/fs/bpf/"))) {
      fail(`${at}: volume ${z.mount.name} (the pins) must be a hostPath under /sys/fs/bpf so pins outlive the pod`);
    }
    if (z.mount.readOnly !== true) fail(`${at}: container ztunnel mounts the pins read-write; it only opens them through bpf(2)`);
  }
}
const cgroupRoot = arg(agent, "--cgroup-root");
const cg = cgroupRoot && mountFor(agent, cgroupRoot);
if (!cg || !(cg.volume || {}).hostPath || cg.volume.hostPath.path !== "/sys/fs/cgroup" || cg.mount.readOnly !== true) {
  fail(`${at}: container node-agent: --cgroup-root (${cgroupRoot}) must be a read-only hostPath mount of /sys/fs/cgroup`);
}
const zdsZ = env(ztunnel, "INPOD_UDS");
const zdsA = arg(agent, "--zds-socket");
if (!zdsZ || zdsZ !== zdsA) fail(`${at}: ztunnel's INPOD_UDS (${zdsZ}) and the agent's --zds-socket (${zdsA}) must be the same path`);
else {
  const z = mountFor(ztunnel, path.dirname(zdsZ));
  const a = mountFor(agent, path.dirname(zdsA));
  if (!z || !a || z.mount.name !== a.mount.name) fail(`${at}: both containers must mount the same volume at ${path.dirname(zdsZ)} (the ZDS socket)`);
}

// Least privilege.
const rbacFile = path.join(L.DEPLOY_DIR, "daemonset/rbac.yaml");
const protocol = path.join(L.SOURCE_DIR, "meshd/kube/protocol.cc");
const agentApp = path.join(L.SOURCE_DIR, "agent/app/app.cc");
const roles = [];
for (const f of L.yamlFiles(L.DEPLOY_DIR)) {
  if (path.basename(f) === "kustomization.yaml") continue;
  for (const o of L.loadDocs(f)) if (o.kind === "Role" || o.kind === "ClusterRole") roles.push({ file: L.rel(f), o });
}
for (const { file, o } of roles) {
  for (const r of o.rules || []) {
    const extra = (r.verbs || []).filter((v) => v !== "list" && v !== "watch");
    if (extra.length) fail(`${file}: ${L.describe(o)} grants ${extra.join(",")} on ${r.resources}; no part of the mesh writes to the API`);
  }
}
const agentRole = L.loadDocs(rbacFile).find((o) => o.kind === "ClusterRole" && o.metadata.name === "ambient-mesh-node-agent");
if (!agentRole) fail("deploy/daemonset/rbac.yaml: no ClusterRole ambient-mesh-node-agent");
else if (!fs.existsSync(protocol) || !fs.existsSync(agentApp)) {
  fail(`the node agent's kinds cannot be read: ${L.rel(agentApp)} and ${L.rel(protocol)} are needed`);
} else {
  const resourceOf = {};
  for (const x of fs.readFileSync(protocol, "utf8").matchAll(/\{"([A-Za-z]+)", "([\w./]+)", "([a-z]+)"[,}]/g)) {
    resourceOf[x[1]] = `${x[2].includes("/") ? x[2].split("/")[0] : ""}/${x[3]}`;
  }
  const kinds = /kinds\s*=\s*\{([^}]*)\}/.exec(fs.readFileSync(agentApp, "utf8"));
  const read = new Set();
  for (const k of kinds ? kinds[1].matchAll(/"([A-Za-z]+)"/g) : []) {
    if (!resourceOf[k[1]]) fail(`${L.rel(agentApp)}: kind ${k[1]} is not in ${L.rel(protocol)}`);
    else read.add(resourceOf[k[1]]);
  }
  if (!read.size) fail(`${L.rel(agentApp)}: found no "kinds = {...}" (update check_daemonset.cjs)`);
  const granted = new Set();
  for (const r of agentRole.rules || []) {
    for (const g of r.apiGroups || []) for (const res of r.resources || []) granted.add(`${g}/${res}`);
  }
  const a = [...read].sort().join(" ");
  const b = [...granted].sort().join(" ");
  if (read.size && a !== b) fail(`ClusterRole ambient-mesh-node-agent grants [${b}] but the node agent reads [${a}] (${L.rel(agentApp)})`);
}
if (spec.automountServiceAccountToken !== false) fail(`${at}: automountServiceAccountToken must be false (the API token goes to the node agent only)`);
const apiTokenVolumes = new Set(
  (spec.volumes || [])
    .filter((v) => v.projected && (v.projected.sources || []).some((s) => s.serviceAccountToken && !s.serviceAccountToken.audience))
    .map((v) => v.name));
for (const c of spec.containers) {
  const has = (c.volumeMounts || []).some((mt) => apiTokenVolumes.has(mt.name));
  if (has && c.name !== "node-agent") fail(`${at}: container ${c.name} mounts a Kubernetes API token; only the node agent reads the API`);
  if (!has && c.name === "node-agent") fail(`${at}: container node-agent mounts no Kubernetes API token (it runs --kube-api)`);
}

if (failures.length) {
  console.error(`daemonset: ${failures.length} problem(s):`);
  for (const f of failures) console.error(`  ${f}`);
  process.exit(1);
}
console.log(`daemonset: RollingUpdate maxSurge 0 maxUnavailable ${ru.maxUnavailable}, grace ${grace}s > drain ${deadline}, ` +
  `probes on 15021, requests everywhere, pins/cgroup/ZDS mounts consistent, ${roles.length} roles list/watch only, ` +
  "node agent's ClusterRole = the kinds it reads, API token in node-agent only");
