// The checks themselves must catch what they are for: each case copies deploy/ (and the
// Dockerfile with the tree's CMakeLists.txt files) to a temporary source tree, breaks one thing,
// runs the check there and expects it to fail naming the problem. The unbroken copy must pass.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { spawnSync } = require("child_process");
const L = require("./lib.cjs");

function copyTree(root) {
  fs.cpSync(path.join(L.SOURCE_DIR, "deploy"), path.join(root, "deploy"), { recursive: true });
  fs.copyFileSync(path.join(L.SOURCE_DIR, "Dockerfile"), path.join(root, "Dockerfile"));
  // What meshd and the node agent read (their RBAC).
  for (const rel of ["meshd/kube/protocol.cc", "agent/app/app.cc"]) {
    const src = path.join(L.SOURCE_DIR, rel);
    if (fs.existsSync(src)) {
      fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
      fs.copyFileSync(src, path.join(root, rel));
    }
  }
  (function scan(dir) {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (e.name.startsWith(".") || e.name.startsWith("build") || e.name === "node_modules") continue;
      const p = path.join(dir, e.name);
      if (e.isDirectory()) scan(p);
      else if (e.name === "CMakeLists.txt") {
        const dst = path.join(root, path.relative(L.SOURCE_DIR, p));
        fs.mkdirSync(path.dirname(dst), { recursive: true });
        fs.copyFileSync(p, dst);
      }
    }
  })(L.SOURCE_DIR);
}

function edit(root, file, from, to) {
  const p = path.join(root, file);
  const text = fs.readFileSync(p, "utf8");
  if (!text.includes(from)) throw new Error(`selftest: ${file} no longer contains ${JSON.stringify(from)}; update the case`);
  fs.writeFileSync(p, text.replace(from, to));
}

function run(root, script) {
  const r = spawnSync(process.execPath, [path.join(__dirname, script)], {
    env: { ...process.env, DEPLOY_SOURCE_DIR: root },
    encoding: "utf8",
  });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

const haveBinaries = !!process.env.ZT_BIN_DIR && fs.existsSync(path.join(process.env.ZT_BIN_DIR, "meshd"));
const cases = [
  { name: "an extra capability not in the README table", script: "check_security_context.cjs",
    file: "deploy/daemonset/ztunnel.yaml", from: "            - SYS_PTRACE\n", to: "            - SYS_PTRACE\n            - NET_RAW\n",
    expect: "adds [BPF,NET_ADMIN,NET_RAW,SYS_ADMIN,SYS_PTRACE] but deploy/README.md documents" },
  { name: "a README row the manifest does not have", script: "check_security_context.cjs",
    file: "deploy/README.md", from: "| node-agent | `SYS_PTRACE` |", to: "| node-agent | `SYS_PTRACE` | x |\n| node-agent | `PERFMON` |",
    expect: "but deploy/README.md documents [BPF,NET_ADMIN,PERFMON,SYS_ADMIN,SYS_PTRACE]" },
  { name: "a privileged container", script: "check_security_context.cjs",
    file: "deploy/daemonset/meshd.yaml", from: "          privileged: false", to: "          privileged: true",
    expect: "container meshd: privileged must be set to false" },
  { name: "a writable root filesystem", script: "check_security_context.cjs",
    file: "deploy/daemonset/ztunnel.yaml", from: "readOnlyRootFilesystem: true", to: "readOnlyRootFilesystem: false",
    expect: "container ztunnel: readOnlyRootFilesystem must be true" },
  { name: "add before drop", script: "check_security_context.cjs",
    file: "deploy/daemonset/ztunnel.yaml", from: "            drop: [\"ALL\"]\n            add:\n            # NET_ADMIN: SO_MARK",
    to: "            add:\n            - BPF\n            drop: [\"ALL\"]\n            x:\n            # NET_ADMIN: SO_MARK",
    expect: "capabilities.drop must come before add" },
  { name: "a misspelt field", script: "check_manifests.cjs",
    file: "deploy/daemonset/ztunnel.yaml", from: "          readOnlyRootFilesystem: true", to: "          readOnlyRootFileSystem: true",
    expect: "readOnlyRootFileSystem: unknown field" },
  { name: "a wrong type", script: "check_manifests.cjs",
    file: "deploy/daemonset/meshd.yaml", from: "  - name: grpc-xds\n    port: 15012", to: "  - name: grpc-xds\n    port: \"fifteen\"",
    expect: "Service ambient-mesh/meshd (v1): spec.ports.0.port: must be integer" },
  { name: "a bad Istio enum", script: "check_manifests.cjs",
    file: "deploy/daemonset/waypoint/gateway.yaml", from: "    port: 15008", to: "    port: 15008\n    allowedRoutes: {namespaces: {from: Everywhere}}",
    expect: "Gateway waypoint (gateway.networking.k8s.io/v1): spec.listeners.0.allowedRoutes.namespaces.from: must be equal to one of the allowed values" },
  // spec.targetRefs is checked by lib.cjs itself (the Istio package lacks it).
  { name: "a policy targetRef without a name", script: "check_manifests.cjs",
    file: "deploy/daemonset/waypoint/gateway.yaml", from: "    protocol: HBONE\n",
    to: "    protocol: HBONE\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\n" +
      "spec:\n  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, nmae: waypoint}]\n",
    expect: "AuthorizationPolicy p (security.istio.io/v1): spec.targetRefs[0].name: must be a non-empty string" },
  { name: "meshd's ClusterRole missing a resource meshd reads", script: "check_manifests.cjs",
    file: "deploy/daemonset/rbac.yaml", from: "resources: [\"gateways\", \"httproutes\", \"grpcroutes\"]",
    to: "resources: [\"gateways\", \"httproutes\"]",
    expect: "ClusterRole ambient-mesh-meshd grants" },
  { name: "a rolling update that surges", script: "check_daemonset.cjs",
    file: "deploy/daemonset/ztunnel.yaml", from: "      maxSurge: 0", to: "      maxSurge: 1",
    expect: "rollingUpdate.maxSurge must be 0" },
  { name: "a grace period shorter than the drain", script: "check_daemonset.cjs",
    file: "deploy/daemonset/ztunnel.yaml", from: "terminationGracePeriodSeconds: 30", to: "terminationGracePeriodSeconds: 20",
    expect: "terminationGracePeriodSeconds (20) must exceed CONNECTION_TERMINATION_DEADLINE (25s)" },
  { name: "the node agent's ClusterRole reading more than the agent reads", script: "check_daemonset.cjs",
    file: "deploy/daemonset/rbac.yaml", from: "resources: [\"namespaces\", \"pods\"]", to: "resources: [\"namespaces\", \"pods\", \"services\"]",
    expect: "ClusterRole ambient-mesh-node-agent grants [/namespaces /pods /services] but the node agent reads [/namespaces /pods]" },
  { name: "a role that writes", script: "check_daemonset.cjs",
    file: "deploy/daemonset/rbac.yaml", from: "verbs: [\"list\", \"watch\"]", to: "verbs: [\"list\", \"watch\", \"patch\"]",
    expect: "grants patch on namespaces,pods; no part of the mesh writes to the API" },
  { name: "a patch whose target is gone", script: "check_kustomize.cjs",
    file: "deploy/istiod/ztunnel-istiod.yaml", from: "  name: ztunnel\n", to: "  name: ztunnel-renamed\n",
    expect: "targets DaemonSet ambient-mesh/ztunnel-renamed, which no resource defines" },
  { name: "a missing resource file", script: "check_kustomize.cjs",
    file: "deploy/daemonset/kustomization.yaml", from: "- rbac.yaml", to: "- rbac.yaml\n- nowhere.yaml",
    expect: "resource nowhere.yaml does not exist" },
  { name: "a duplicate object", script: "check_kustomize.cjs",
    file: "deploy/daemonset/kustomization.yaml", from: "- rbac.yaml", to: "- rbac.yaml\n- waypoint/../rbac.yaml",
    expect: "duplicate object /ServiceAccount ambient-mesh/ztunnel" },
  { name: "a binary the build does not make", script: "check_dockerfile.cjs",
    file: "Dockerfile", from: "COPY --from=build /src/build/bin/meshd /usr/local/bin/meshd",
    to: "COPY --from=build /src/build/bin/meshd /usr/local/bin/meshd\nCOPY --from=build /src/build/bin/meshctl /usr/local/bin/meshctl",
    expect: "copies meshctl, which the build stage does not build" },
  { name: "a non-Debian-12 base", script: "check_dockerfile.cjs",
    file: "Dockerfile", from: "FROM debian:bookworm AS build", to: "FROM ubuntu:24.04 AS build",
    expect: "stage build is FROM ubuntu:24.04, not Debian 12" },
  ...(haveBinaries
    ? [{ name: "a runtime library package left out", script: "check_dockerfile.cjs",
        file: "Dockerfile", from: "      libgrpc++1.51 \\\n", to: "",
        expect: "which the runtime stage does not install" },
      { name: "a flag meshd does not have", script: "check_dockerfile.cjs",
        file: "deploy/daemonset/meshd.yaml", from: "- --log-format=json", to: "- --log-formatt=json",
        expect: "--log-formatt is not an option of meshd" }]
    : []),
];

const failures = [];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "deploy-selftest-"));
try {
  const clean = path.join(tmp, "clean");
  copyTree(clean);
  for (const script of ["check_manifests.cjs", "check_kustomize.cjs", "check_security_context.cjs", "check_dockerfile.cjs", "check_daemonset.cjs"]) {
    const r = run(clean, script);
    if (r.code !== 0) failures.push(`the unbroken copy fails ${script}:\n${r.out}`);
  }
  cases.forEach((c, i) => {
    const root = path.join(tmp, `case${i}`);
    copyTree(root);
    edit(root, c.file, c.from, c.to);
    const r = run(root, c.script);
    if (r.code === 0) failures.push(`${c.name}: ${c.script} passed; it must fail`);
    else if (!r.out.includes(c.expect)) failures.push(`${c.name}: ${c.script} failed without saying "${c.expect}":\n${r.out}`);
    else console.log(`ok: ${c.name} -> ${c.script} fails`);
  });
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
if (failures.length) {
  console.error(`selftest: ${failures.length} problem(s):`);
  for (const f of failures) console.error(`  ${f}`);
  process.exit(1);
}
console.log(`selftest: ${cases.length} broken variants rejected, the unbroken copy accepted`);
