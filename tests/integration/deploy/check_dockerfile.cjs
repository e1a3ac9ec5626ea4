// The image, correct by construction (no docker here): the Dockerfile's structure, and that it
// fits the CMake build and the manifests.
// - two stages: `build` FROM debian:bookworm (Debian 12), which runs scripts/setup.sh and a
//   Release CMake build of named targets, and the final `runtime` FROM debian:bookworm-slim;
// - each binary copied into the runtime stage is one of those targets, and an add_executable()
//   of the source tree; each binary a manifest under deploy/ runs (command[0]) is copied, unless
//   the source tree has no such target yet (reported as pending);
// - the runtime stage ends as a non-root USER;
// - for each copied binary built in ZT_BIN_DIR: every shared library it loads (ldd) belongs to a
//   Debian package the runtime stage installs or one they depend on;
// - each --flag in a container's args and each env name of a container (for our binaries) is
//   listed by the built binary's --help, apart from the pending ones below.
"use strict";
const fs = require("fs");
const path = require("path");
const { execFileSync } = require("child_process");
const L = require("./lib.cjs");

// Settings the manifests use before the binaries implement them, with the work that adds them,
// as { binary: { binary: "why", args: { "--flag": "why" }, env: { NAME: "why" } } }. A missing one
// is reported, not failed; everything else must be in --help. None now: node-agent --kube-api
// (issue 8) and the waypoint binary (issue 6) exist, so they are checked like the rest.
const PENDING = {};

const failures = [];
const notes = [];
const fail = (m) => failures.push(m);
const BIN_DIR = process.env.ZT_BIN_DIR || "";

// --- Dockerfile instructions (comments dropped, continuations joined) ---
const dockerfile = path.join(L.SOURCE_DIR, "Dockerfile");
const instructions = [];
{
  let cur = "";
  for (const raw of fs.readFileSync(dockerfile, "utf8").split("\n")) {
    const line = raw.trim();
    if (!cur && (line.startsWith("#") || !line)) continue;
    if (line.startsWith("#")) continue;
    cur += (cur ? " " : "") + line.replace(/\\$/, "").trim();
    if (!line.endsWith("\\")) {
      const m = cur.match(/^(\S+)\s*(.*)$/);
      instructions.push({ op: m[1].toUpperCase(), args: m[2] });
      cur = "";
    }
  }
}
const stages = [];
for (const ins of instructions) {
  if (ins.op === "FROM") {
    const m = ins.args.match(/^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i);
    stages.push({ image: m ? m[1] : ins.args, name: m && m[2] ? m[2] : "", body: [] });
  } else if (stages.length) {
    stages[stages.length - 1].body.push(ins);
  } else if (ins.op !== "ARG") {
    fail(`Dockerfile: ${ins.op} before the first FROM`);
  }
}
const build = stages.find((s) => s.name === "build");
const runtime = stages[stages.length - 1];
if (stages.length !== 2) fail(`Dockerfile: expected 2 stages (build, runtime), found ${stages.length}`);
if (!build) fail("Dockerfile: no stage named build");
if (!runtime || runtime.name !== "runtime") fail("Dockerfile: the last stage must be named runtime");
const debian12 = /^debian:bookworm(-[a-z0-9.]+)?(@sha256:[0-9a-f]{64})?$/;
for (const s of stages) {
  if (!debian12.test(s.image)) fail(`Dockerfile: stage ${s.name || "?"} is FROM ${s.image}, not Debian 12 (debian:bookworm*)`);
}
if (runtime && !/^debian:bookworm-slim/.test(runtime.image)) fail(`Dockerfile: runtime stage should be debian:bookworm-slim, is ${runtime.image}`);

let targets = [];
if (build) {
  const runs = build.body.filter((i) => i.op === "RUN").map((i) => i.args).join(" && ");
  if (!/scripts\/setup\.sh|\/tmp\/setup\.sh/.test(runs)) fail("Dockerfile: the build stage does not run scripts/setup.sh");
  if (!build.body.some((i) => i.op === "COPY" && /scripts\/setup\.sh/.test(i.args))) fail("Dockerfile: the build stage does not copy scripts/setup.sh");
  if (!/-DCMAKE_BUILD_TYPE=Release/.test(runs)) fail("Dockerfile: the build is not a Release build");
  const m = runs.match(/cmake --build \S+ --target ((?:[\w.-]+\s*)+)/);
  if (!m) fail("Dockerfile: no `cmake --build <dir> --target ...` in the build stage");
  else targets = m[1].trim().split(/\s+/);
}

// add_executable() names of the source tree.
const executables = new Set();
(function scan(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.name.startsWith(".") || e.name.startsWith("build") || e.name === "node_modules") continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) scan(p);
    else if (e.name === "CMakeLists.txt") {
      for (const m of fs.readFileSync(p, "utf8").matchAll(/add_executable\(\s*([\w.-]+)/g)) executables.add(m[1]);
    }
  }
})(L.SOURCE_DIR);

// COPY --from=build <src>... <dst>
const copied = new Map();  // binary name -> path in the image
for (const ins of runtime ? runtime.body : []) {
  if (ins.op !== "COPY") continue;
  const parts = ins.args.split(/\s+/);
  const from = parts.find((p) => p.startsWith("--from="));
  if (!from) continue;
  if (from !== "--from=build") fail(`Dockerfile: COPY ${from}: binaries come from the build stage`);
  const args = parts.filter((p) => !p.startsWith("--"));
  const dst = args.pop();
  for (const src of args) {
    const m = src.match(/\/build\/bin\/([\w.-]+)$/);
    if (!m) {
      fail(`Dockerfile: COPY ${src}: expected a binary from <build dir>/bin/`);
      continue;
    }
    const name = m[1];
    const target = dst.endsWith("/") ? dst + name : dst;
    if (path.basename(target) !== name) fail(`Dockerfile: ${name} is installed as ${target}; keep its name`);
    copied.set(name, target);
    if (!targets.includes(name)) fail(`Dockerfile: copies ${name}, which the build stage does not build (--target ${targets.join(" ")})`);
    if (!executables.has(name)) fail(`Dockerfile: copies ${name}, but no CMakeLists.txt has add_executable(${name})`);
  }
}
for (const t of targets) {
  if (!copied.has(t)) fail(`Dockerfile: builds ${t} but does not copy it into the runtime stage`);
}
const user = runtime ? runtime.body.filter((i) => i.op === "USER").pop() : null;
if (!user || /^(0|root)(:|$)/.test(user.args)) fail("Dockerfile: the runtime stage must end with a non-root USER");

// --- The manifests' binaries, flags and environment ---
const containers = [];
const patches = L.patchFiles();  // partial objects: their containers are the base's
for (const f of L.yamlFiles(L.DEPLOY_DIR)) {
  if (path.basename(f) === "kustomization.yaml" || patches.has(f)) continue;
  for (const o of L.loadDocs(f)) {
    const spec = o.spec && o.spec.template && o.spec.template.spec;
    for (const c of spec ? [...(spec.initContainers || []), ...(spec.containers || [])] : []) {
      containers.push({ file: L.rel(f), obj: o, c });
    }
  }
}
const helpCache = new Map();
function help(name) {
  if (!helpCache.has(name)) {
    const bin = BIN_DIR ? path.join(BIN_DIR, name) : "";
    let text = null;
    if (bin && fs.existsSync(bin)) {
      try {
        text = execFileSync(bin, ["--help"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 10000 });
      } catch (e) {
        text = `${e.stdout || ""}${e.stderr || ""}`;
        if (!text) fail(`${bin} --help failed: ${e.message}`);
      }
    }
    helpCache.set(name, text);
  }
  return helpCache.get(name);
}
const pendingNotes = new Set();
for (const { file, obj, c } of containers) {
  const at = `${file}: ${L.describe(obj)} container ${c.name}`;
  if (!c.command || !c.command.length) {
    fail(`${at}: set command (the image holds several binaries)`);
    continue;
  }
  const name = path.basename(c.command[0]);
  const pending = PENDING[name] || {};
  if (!copied.has(name)) {
    if (!executables.has(name) && pending.binary) {
      pendingNotes.add(`pending: ${name} is not built yet (${pending.binary}); ${file} runs it`);
      continue;
    }
    fail(`${at}: runs ${c.command[0]}, which the Dockerfile does not put in the image`);
    continue;
  }
  if (copied.get(name) !== c.command[0]) fail(`${at}: runs ${c.command[0]}, but the image has it at ${copied.get(name)}`);
  const text = help(name);
  if (text === null) {
    pendingNotes.add(`${name} not built in ${BIN_DIR || "(ZT_BIN_DIR unset)"}: its flags and env were not checked against --help`);
    continue;
  }
  for (const a of c.args || []) {
    const flag = a.match(/^(--[\w-]+)/);
    if (!flag) continue;
    const re = new RegExp(`(^|\\s)${flag[1]}(?![\\w-])`, "m");
    if (re.test(text)) continue;
    const why = (pending.args || {})[flag[1]];
    if (why) pendingNotes.add(`pending: ${name} --help does not list ${flag[1]} yet (${why})`);
    else fail(`${at}: ${flag[1]} is not an option of ${name} (${name} --help)`);
  }
  for (const e of c.env || []) {
    // meshd and the agent take flags; their env only feeds $(VAR) in args.
    if (name !== "ztunnel" && name !== "waypoint") continue;
    // --help wraps lines, so "(env NAME" may span two.
    if (new RegExp(`\\benv ${e.name}\\b`).test(text.replace(/\s+/g, " "))) continue;
    const why = (pending.env || {})[e.name];
    if (why) pendingNotes.add(`pending: ${name} --help does not list ${e.name} yet (${why})`);
    else fail(`${at}: env ${e.name} is not read by ${name} (not in ${name} --help)`);
  }
}

// --- Runtime libraries: every library the binaries load comes from an installed package ---
// (One dpkg call for all paths and one for all packages: dpkg -S costs about a second a call.)
function dpkgOwners(paths) {
  const candidates = new Set();
  for (const p of paths) {
    for (const q of [p, fs.realpathSync(p)]) {
      candidates.add(q);
      // merged /usr: a file under /lib may be registered as /usr/lib and the other way round
      candidates.add(q.startsWith("/usr/") ? q.slice(4) : "/usr" + q);
    }
  }
  const r = require("child_process").spawnSync("dpkg", ["-S", ...candidates], { encoding: "utf8" });
  const owner = new Map();
  for (const line of (r.stdout || "").split("\n")) {
    const m = line.match(/^([^\s:,]+)(?::[\w-]+)?: (\/\S+)$/);
    if (m) owner.set(m[2], m[1]);
  }
  const out = new Map();
  for (const p of paths) {
    const real = fs.realpathSync(p);
    const alts = [p, real].flatMap((q) => [q, q.startsWith("/usr/") ? q.slice(4) : "/usr" + q]);
    out.set(p, alts.map((q) => owner.get(q)).find(Boolean) || null);
  }
  return out;
}
// Installed packages reachable from `roots` through Depends/Pre-Depends (virtual packages
// through Provides).
function dependsClosure(roots) {
  const text = execFileSync("dpkg-query", ["-W", "-f=${Package}\t${Depends}, ${Pre-Depends}\t${Provides}\n"], { encoding: "utf8" });
  const deps = new Map();
  const providers = new Map();
  for (const line of text.split("\n")) {
    const [pkg, d, prov] = line.split("\t");
    if (!pkg) continue;
    deps.set(pkg, (d || "").split(/[,|]/).map((x) => x.trim().split(/[\s(:]/)[0]).filter(Boolean));
    for (const v of (prov || "").split(",").map((x) => x.trim().split(/[\s(:]/)[0]).filter(Boolean)) {
      (providers.get(v) || providers.set(v, []).get(v)).push(pkg);
    }
  }
  const seen = new Set();
  const todo = [...roots];
  while (todo.length) {
    const p = todo.pop();
    if (seen.has(p)) continue;
    seen.add(p);
    todo.push(...(deps.get(p) || []), ...(providers.get(p) || []));
  }
  return seen;
}
const aptInstall = runtime
  ? runtime.body.filter((i) => i.op === "RUN").map((i) => i.args).join(" ").match(/apt-get install ((?:-\S+\s+)*)((?:[a-z0-9][a-z0-9.+-]*\s*)+)/)
  : null;
const runtimePackages = aptInstall ? aptInstall[2].trim().split(/\s+/) : [];
if (!runtimePackages.length) fail("Dockerfile: the runtime stage installs no packages with apt-get install");
const haveDpkg = (() => {
  try {
    execFileSync("dpkg-query", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();
if (haveDpkg && runtimePackages.length) {
  // What debian:bookworm-slim already has comes with apt (libc6, libgcc-s1, libstdc++6, ...).
  const provided = dependsClosure([...runtimePackages, "apt", "base-files", "libc-bin"]);
  for (const [name] of copied) {
    const bin = BIN_DIR ? path.join(BIN_DIR, name) : "";
    if (!bin || !fs.existsSync(bin)) {
      notes.push(`${name} not built in ${BIN_DIR || "(ZT_BIN_DIR unset)"}: its libraries were not checked`);
      continue;
    }
    const out = execFileSync("ldd", [bin], { encoding: "utf8" });
    if (/lib(asan|ubsan|tsan)/.test(out)) {
      notes.push(`${name} is a sanitizer build: its libraries were not checked`);
      continue;
    }
    const libs = [];
    for (const line of out.split("\n")) {
      if (line.includes("not found")) fail(`${name}: ldd: ${line.trim()}`);
      const m = line.match(/=>\s+(\/\S+)/);
      if (m) libs.push(m[1]);
    }
    const owners = dpkgOwners(libs);
    for (const lib of libs) {
      const owner = owners.get(lib);
      if (!owner) fail(`${name} loads ${lib}, which no Debian package owns (the image cannot provide it)`);
      else if (!provided.has(owner)) fail(`${name} loads ${lib} from package ${owner}, which the runtime stage does not install (add it to apt-get install)`);
    }
    notes.push(`${name}: ${libs.length} shared libraries, all from the runtime stage's packages`);
  }
} else if (!haveDpkg) {
  notes.push("dpkg not available: runtime libraries not checked");
}

for (const n of [...notes, ...pendingNotes]) console.log(n);
if (failures.length) {
  console.error(`Dockerfile: ${failures.length} problem(s):`);
  for (const f of failures) console.error(`  ${f}`);
  process.exit(1);
}
console.log(`Dockerfile: stages ${stages.map((s) => `${s.name}=${s.image}`).join(", ")}; image binaries ${[...copied.keys()].join(", ")}; ${containers.length} containers checked`);
